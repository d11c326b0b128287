//! The state-backed authenticator (spec §3–§4): superusers by key, users by e-mail and key
//! with activation codes, nodes by their paired key. Every change (a token issued, activated
//! or dropped, a user created) is a raft command, so any replica can take the next step.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::mailer::{CodeKind, Mailer};
use super::{Authenticator, Decision, Denied, GLOBAL_REALM, HelloRequest, Principal};
use crate::replica::Replica;
use crate::store::model::{
    ActivationToken, ManagementRealm, Node, TOKEN_ACTIVE, TOKEN_LOGIN, TOKEN_PENDING,
    TOKEN_REGISTRATION, User, UserMrealmRole, UserRole,
};
use crate::store::{Command, Index, Kind};
use crate::wamp::cryptosign;
use crate::wamp::{Dict, Value, errors};

/// How long an activation code stays valid.
const CODE_LIFETIME_MICROS: i64 = 15 * 60 * 1_000_000;

/// The alphabet of `autobahn.util.generate_activation_code()`: no look-alike characters.
const CODE_ALPHABET: &[u8] = b"345679ACEFGHJKLMNPQRSTUVWXY";

use crate::wamp::errors::{
    AUTH_EMAIL_FAILURE as EMAIL_FAILURE, AUTH_INVALID_CODE as INVALID_CODE,
    AUTH_INVALID_PARAMETERS as INVALID_PARAMETERS,
};

/// Role names a user may request on a management realm, as the reference's `UserRole`s.
fn mrealm_role(name: &str) -> Option<u8> {
    UserRole::from_name(name).map(UserRole::code)
}

pub fn activation_code() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..3)
        .map(|_| {
            (0..4)
                .map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn unavailable(e: impl std::fmt::Display) -> Denied {
    Denied::new(
        errors::AUTHENTICATION_FAILED,
        format!("the master cannot read or change its state right now: {e}"),
    )
}

pub struct StateAuthenticator {
    /// Superuser keys and anonymous realms.
    fixed: super::StaticAuthenticator,
    superusers: Vec<ed25519_dalek::VerifyingKey>,
    replica: Arc<Replica>,
    /// Without one, the log line is the only way a code reaches its user.
    mailer: Option<Arc<Mailer>>,
    /// How many codes may be issued, per e-mail, per source and in all.
    limiter: super::limits::IssueLimiter,
}

impl StateAuthenticator {
    pub fn new(
        fixed: super::StaticAuthenticator,
        superusers: Vec<ed25519_dalek::VerifyingKey>,
        replica: Arc<Replica>,
        mailer: Option<Arc<Mailer>>,
        limits: super::limits::IssueLimits,
    ) -> StateAuthenticator {
        StateAuthenticator {
            fixed,
            superusers,
            replica,
            mailer,
            limiter: super::limits::IssueLimiter::new(limits),
        }
    }

    async fn decide(&self, hello: &HelloRequest) -> Result<Decision, Denied> {
        if !hello.authmethods.iter().any(|m| m == "cryptosign") {
            if let Some(realm) = hello.realm.as_deref()
                && !self.fixed.knows_realm(realm)
                && (hello.authmethods.is_empty()
                    || hello.authmethods.iter().any(|m| m == "anonymous"))
            {
                return self.public(realm, hello.authrole.as_deref()).await;
            }
            return self.fixed.authenticate(hello).await;
        }
        let pubkey = hello
            .authextra
            .get("pubkey")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Denied::new(INVALID_PARAMETERS, "cryptosign needs authextra.pubkey"))?
            .to_ascii_lowercase();
        let key = cryptosign::parse_pubkey(&pubkey).ok_or_else(|| {
            Denied::new(
                INVALID_PARAMETERS,
                "authextra.pubkey is not a 32-byte hex Ed25519 key",
            )
        })?;
        let realm = hello.realm.as_deref();
        let role = hello.authrole.as_deref();
        let role_allowed = match realm {
            None => matches!(role, None | Some("node")),
            Some(GLOBAL_REALM) => matches!(role, None | Some("user")),
            Some(_) => matches!(
                role,
                None | Some("guest" | "user" | "developer" | "operator" | "admin" | "owner")
            ),
        };
        if !role_allowed {
            return Err(Denied::new(
                INVALID_PARAMETERS,
                format!("role {role:?} cannot be requested on realm {realm:?}"),
            ));
        }
        if self.superusers.contains(&key) {
            return self.fixed.authenticate(hello).await;
        }
        if role == Some("node") {
            return self.node(hello, &pubkey, key).await;
        }
        self.user(hello, &pubkey, key).await
    }

    /// §1: anyone may join a management realm anonymously as `public` (read-only status and
    /// trace data). The authid is the master's choice, so it cannot pose as a node or user.
    async fn public(&self, realm: &str, role: Option<&str>) -> Result<Decision, Denied> {
        if !matches!(role, None | Some("public")) {
            return Err(Denied::new(
                errors::NOT_AUTHORIZED,
                format!("anonymous sessions on {realm:?} get role \"public\", not {role:?}"),
            ));
        }
        let r = self.replica.read().await.map_err(unavailable)?;
        let known: Option<ManagementRealm> =
            r.lookup(Index::MrealmByName, realm).map_err(unavailable)?;
        if known.is_none() {
            return Err(Denied::new(
                errors::NO_SUCH_REALM,
                format!("no realm \"{realm}\" exists on this router"),
            ));
        }
        Ok(Decision {
            principal: Principal {
                realm: realm.to_owned(),
                authid: super::anonymous_authid(),
                authrole: "public".into(),
                authmethod: "anonymous",
                authprovider: "dynamic",
                authextra: Dict::new(),
                policy_role: None,
            },
            cryptosign_key: None,
        })
    }

    /// §4.3: a paired node joins its management realm under its authid, as role `node`.
    async fn node(
        &self,
        hello: &HelloRequest,
        pubkey: &str,
        key: ed25519_dalek::VerifyingKey,
    ) -> Result<Decision, Denied> {
        if hello.realm.is_some() {
            return Err(Denied::new(
                INVALID_PARAMETERS,
                "nodes MUST NOT request a realm",
            ));
        }
        let unpaired = || {
            Denied::new(
                crate::wamp::errors::AUTH_NODE_UNPAIRED,
                "This node is unpaired. Please pair the node with management realm first.",
            )
        };
        let r = self.replica.read().await.map_err(unavailable)?;
        let node: Node = r
            .lookup(Index::NodeByPubkey, pubkey)
            .map_err(unavailable)?
            .ok_or_else(unpaired)?;
        let (Some(mrealm_oid), Some(authid)) = (node.mrealm_oid, node.authid.clone()) else {
            return Err(unpaired());
        };
        let mrealm: ManagementRealm = r
            .get(&mrealm_oid.to_string())
            .map_err(unavailable)?
            .ok_or_else(unpaired)?;
        let authextra = match node
            .authextra
            .clone()
            .and_then(|j| serde_json::from_value::<Value>(j).ok())
        {
            Some(Value::Dict(d)) => d,
            _ => Dict::new(),
        };
        Ok(Decision {
            principal: Principal {
                realm: mrealm.name,
                authid,
                authrole: "node".into(),
                authmethod: "cryptosign",
                authprovider: "dynamic",
                authextra,
                policy_role: None,
            },
            cryptosign_key: Some(key),
        })
    }

    /// §3.3 step 4: users by e-mail and key, with activation codes.
    async fn user(
        &self,
        hello: &HelloRequest,
        pubkey: &str,
        key: ed25519_dalek::VerifyingKey,
    ) -> Result<Decision, Denied> {
        let code = hello
            .authextra
            .get("activation_code")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let new_code = hello
            .authextra
            .get("request_new_activation_code")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let Some(email) = hello.authid.clone() else {
            return Err(Denied::new(
                INVALID_PARAMETERS,
                "users authenticate with authid = their e-mail address",
            ));
        };
        // Superuser is decided by the configured keys alone (checked before this): a user
        // may not claim an authid the master gives to itself or to others.
        if super::is_reserved_authid(&email) {
            return Err(Denied::new(
                INVALID_PARAMETERS,
                format!("authid {email:?} is reserved and cannot be a user's"),
            ));
        }
        let r = self.replica.read().await.map_err(unavailable)?;
        let lookup = ActivationToken::lookup_key(&email, pubkey);
        let mut token: Option<ActivationToken> = r
            .lookup(Index::TokenByEmailPubkey, &lookup)
            .map_err(unavailable)?;
        let user: Option<User> = r.lookup(Index::UserByEmail, &email).map_err(unavailable)?;
        drop(r);

        if new_code && token.as_ref().is_some_and(|t| t.status == TOKEN_PENDING) {
            let oid = token.take().expect("checked").oid;
            self.propose(Command::Delete {
                kind: Kind::ActivationToken,
                key: oid.to_string(),
                cascade: false,
            })
            .await?;
        }
        let accept = |realm: String, authrole: &str| Decision {
            principal: Principal {
                realm,
                authid: email.clone(),
                authrole: authrole.to_owned(),
                authmethod: "cryptosign",
                authprovider: "dynamic",
                authextra: Dict::new(),
                policy_role: None,
            },
            cryptosign_key: Some(key),
        };
        let Some(token) = token else {
            if code.is_some() {
                return Err(Denied::new(
                    crate::wamp::errors::AUTH_NO_PENDING_ACTIVATION,
                    "there is no pending activation for this e-mail and key",
                ));
            }
            self.limiter.admit(&email, &hello.peer)?;
            self.pending_within_limits(&email).await?;
            return self.issue_code(&email, pubkey, user.is_some()).await;
        };
        if token.status == TOKEN_ACTIVE {
            if code.is_some() {
                return Err(Denied::new(
                    crate::wamp::errors::AUTH_NO_PENDING_ACTIVATION,
                    "this key is already activated",
                ));
            }
            let user = user.ok_or_else(|| {
                Denied::new(errors::AUTHENTICATION_FAILED, "the activated user is gone")
            })?;
            return match hello.realm.as_deref() {
                None | Some(GLOBAL_REALM) => Ok(accept(GLOBAL_REALM.into(), "user")),
                Some(mrealm) => {
                    let role = hello.authrole.clone().unwrap_or_else(|| "owner".into());
                    self.check_mrealm_role(&user, mrealm, &role).await?;
                    Ok(accept(mrealm.into(), &role))
                }
            };
        }
        // Pending.
        let Some(code) = code else {
            let minutes = (crate::clock::now_micros() - token.created) / 60_000_000;
            return Err(Denied::new(
                crate::wamp::errors::AUTH_PENDING_ACTIVATION,
                format!(
                    "There is a pending activation (from {minutes} minutes ago) - please check \
                     your email inbox, or request a new code"
                ),
            ));
        };
        if crate::clock::now_micros() - token.created > CODE_LIFETIME_MICROS {
            self.propose(Command::Delete {
                kind: Kind::ActivationToken,
                key: token.oid.to_string(),
                cascade: false,
            })
            .await?;
            return Err(Denied::new(
                INVALID_CODE,
                "the activation code has expired (15 minutes); request a new one",
            ));
        }
        if !code.eq_ignore_ascii_case(&token.code) {
            return Err(Denied::new(
                INVALID_CODE,
                "the activation code does not match the pending one",
            ));
        }
        let new_user = user.is_none().then(|| User {
            oid: uuid::Uuid::new_v4(),
            label: None,
            description: None,
            tags: None,
            email: email.clone(),
            registered: crate::clock::now_micros(),
            pubkey: None,
        });
        self.propose(Command::ActivateToken {
            token_oid: token.oid,
            completed: crate::clock::now_micros(),
            new_user,
        })
        .await?;
        tracing::info!("activated key {pubkey} for {email}");
        // As the reference: a fresh activation always lands on the global realm.
        Ok(accept(GLOBAL_REALM.into(), "user"))
    }

    async fn issue_code(&self, email: &str, pubkey: &str, known: bool) -> Result<Decision, Denied> {
        let token = ActivationToken {
            oid: uuid::Uuid::new_v4(),
            atype: if known {
                TOKEN_LOGIN
            } else {
                TOKEN_REGISTRATION
            },
            status: TOKEN_PENDING,
            created: crate::clock::now_micros(),
            completed: None,
            code: activation_code(),
            email: email.to_owned(),
            pubkey: pubkey.to_owned(),
        };
        let code = token.code.clone();
        self.propose(Command::IssueActivationToken { token })
            .await?;
        // Logged even when mailed: an operator can hand the code out if the mail gets lost.
        tracing::info!("activation code for {email}: {code}");
        if let Some(mailer) = &self.mailer {
            let kind = if known {
                CodeKind::Login
            } else {
                CodeKind::Registration
            };
            if let Err(e) = mailer.send_code(email, &code, kind).await {
                tracing::warn!("activation code for {email} not mailed: {e}");
                // The token stays pending: the operator can still hand out the logged code,
                // and the user can ask for a new one once mail works again.
                return Err(Denied::new(
                    EMAIL_FAILURE,
                    format!(
                        "The authentication code could not be sent to {email} ({e}). Ask the \
                         operator of this master for it, or request a new code later."
                    ),
                ));
            }
        }
        let uri = if known {
            crate::wamp::errors::AUTH_REGISTERED_USER_CODE_SENT
        } else {
            crate::wamp::errors::AUTH_NEW_USER_CODE_SENT
        };
        Err(Denied::new(
            uri,
            format!("We have sent an authentication code to {email}."),
        ))
    }

    /// The cluster-wide limits, counted in the replicated state (the rate limits of
    /// `limits` are each replica's own): pending codes per e-mail, and in all.
    async fn pending_within_limits(&self, email: &str) -> Result<(), Denied> {
        let limits = self.limiter.limits();
        let r = self.replica.read().await.map_err(unavailable)?;
        let refuse = |what: String| {
            Err(Denied::new(
                super::limits::RATE_LIMITED,
                format!("too many pending activation codes {what}; try again later"),
            ))
        };
        if r.count(Kind::ActivationToken).map_err(unavailable)? >= limits.pending_total as u64 {
            return refuse("in this cluster".into());
        }
        let tokens: Vec<ActivationToken> = r.list("").map_err(unavailable)?;
        let pending = tokens
            .iter()
            .filter(|t| t.email == email && t.status == TOKEN_PENDING)
            .count();
        if pending >= limits.per_email {
            return refuse(format!("for {email}"));
        }
        Ok(())
    }

    async fn check_mrealm_role(&self, user: &User, mrealm: &str, role: &str) -> Result<(), Denied> {
        let r = self.replica.read().await.map_err(unavailable)?;
        let realm: ManagementRealm = r
            .lookup(Index::MrealmByName, mrealm)
            .map_err(unavailable)?
            .ok_or_else(|| {
                Denied::new(
                    errors::NO_SUCH_REALM,
                    format!("no management realm {mrealm:?}"),
                )
            })?;
        let roles: Option<UserMrealmRole> = r
            .get(&format!("{}/{}", realm.oid, user.oid))
            .map_err(unavailable)?;
        let wanted = mrealm_role(role);
        let held = roles.map(|r| r.roles).unwrap_or_default();
        match wanted {
            Some(w) if held.contains(&w) => Ok(()),
            _ => Err(Denied::new(
                errors::NOT_AUTHORIZED,
                format!("{} holds no role {role:?} on {mrealm:?}", user.email),
            )),
        }
    }

    async fn propose(&self, cmd: Command) -> Result<serde_json::Value, Denied> {
        self.replica.propose(cmd).await.map_err(unavailable)
    }
}

impl Authenticator for StateAuthenticator {
    fn authenticate<'a>(
        &'a self,
        hello: &'a HelloRequest,
    ) -> BoxFuture<'a, Result<Decision, Denied>> {
        Box::pin(self.decide(hello))
    }
}
