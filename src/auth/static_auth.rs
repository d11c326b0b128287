//! Superuser keys (cryptosign) and per-realm anonymous roles.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use futures_util::future::BoxFuture;

use super::{Authenticator, Decision, Denied, GLOBAL_REALM, HelloRequest, Principal};
use crate::wamp::cryptosign;
use crate::wamp::{Dict, errors};

/// A realm the authenticator knows, with the role anonymous sessions get there (if any).
#[derive(Clone, Debug)]
pub struct AnonymousRealm {
    pub realm: String,
    pub role: Option<String>,
}

pub struct StaticAuthenticator {
    superusers: Vec<VerifyingKey>,
    anonymous: HashMap<String, Option<String>>,
}

impl StaticAuthenticator {
    pub fn new(superusers: Vec<VerifyingKey>, anonymous: Vec<AnonymousRealm>) -> Self {
        StaticAuthenticator {
            superusers,
            anonymous: anonymous.into_iter().map(|a| (a.realm, a.role)).collect(),
        }
    }

    /// Whether the realm is one of the configured (or built-in) realms.
    pub fn knows_realm(&self, realm: &str) -> bool {
        self.anonymous.contains_key(realm)
    }

    fn cryptosign(&self, hello: &HelloRequest) -> Result<Decision, Denied> {
        let pubkey = hello
            .authextra
            .get("pubkey")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Denied::new(
                    crate::wamp::errors::AUTH_INVALID_PARAMETERS,
                    "cryptosign needs authextra.pubkey",
                )
            })?;
        let key = cryptosign::parse_pubkey(pubkey).ok_or_else(|| {
            Denied::new(
                crate::wamp::errors::AUTH_INVALID_PARAMETERS,
                "authextra.pubkey is not a 32-byte hex Ed25519 key",
            )
        })?;
        if !self.superusers.contains(&key) {
            if hello.authrole.as_deref() == Some("node") {
                return Err(Denied::new(
                    crate::wamp::errors::AUTH_NODE_UNPAIRED,
                    "This node is unpaired. Please pair the node with management realm first.",
                ));
            }
            return Err(Denied::new(
                crate::wamp::errors::AUTH_UNKNOWN_KEY,
                format!("no principal with public key {pubkey}"),
            ));
        }
        // As in the reference: the global realm means role `user`, any other realm `owner`
        // unless the client asks for a role.
        let (realm, authrole, policy_role) = match hello.realm.as_deref() {
            None | Some(GLOBAL_REALM) => (
                GLOBAL_REALM.to_owned(),
                "user".to_owned(),
                Some(crate::authz::SUPERUSER_ROLE),
            ),
            Some(r) => (
                r.to_owned(),
                hello.authrole.clone().unwrap_or_else(|| "owner".to_owned()),
                None,
            ),
        };
        Ok(Decision {
            principal: Principal {
                realm,
                authid: "superuser".to_owned(),
                authrole,
                authmethod: "cryptosign",
                authprovider: "static",
                authextra: Dict::new(),
                policy_role,
            },
            cryptosign_key: Some(key),
        })
    }

    fn anonymous(&self, hello: &HelloRequest) -> Result<Decision, Denied> {
        let realm = hello
            .realm
            .clone()
            .unwrap_or_else(|| GLOBAL_REALM.to_owned());
        let role = match self.anonymous.get(&realm) {
            None => {
                let message = format!("no realm \"{realm}\" exists on this router");
                return Err(Denied::new(errors::NO_SUCH_REALM, message));
            }
            Some(None) => {
                let message = format!("anonymous access to realm \"{realm}\" is not allowed");
                return Err(Denied::new(errors::NOT_AUTHORIZED, message));
            }
            Some(Some(role)) => role,
        };
        Ok(Decision {
            principal: Principal {
                realm,
                // The master names anonymous sessions: a requested authid (`superuser`, a
                // node's) would let them pose as someone they are not.
                authid: super::anonymous_authid(),
                authrole: role.clone(),
                authmethod: "anonymous",
                authprovider: "static",
                authextra: Dict::new(),
                policy_role: None,
            },
            cryptosign_key: None,
        })
    }
}

impl Authenticator for StaticAuthenticator {
    fn authenticate<'a>(
        &'a self,
        hello: &'a HelloRequest,
    ) -> BoxFuture<'a, Result<Decision, Denied>> {
        let result = if hello.authmethods.iter().any(|m| m == "cryptosign") {
            self.cryptosign(hello)
        } else if hello.authmethods.is_empty() || hello.authmethods.iter().any(|m| m == "anonymous")
        {
            self.anonymous(hello)
        } else {
            Err(Denied::new(
                errors::NO_AUTH_METHOD,
                format!("no supported authmethod in {:?}", hello.authmethods),
            ))
        };
        Box::pin(std::future::ready(result))
    }
}
