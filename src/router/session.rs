//! One client connection's WAMP session: HELLO, authentication, WELCOME, then dispatch.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Notify;

use super::Router;
use super::authenticator::{Decision, Denied, HelloRequest};
use super::realm::Realm;
use super::session_info::{Outbound, Outgoing, SessionInfo};
use crate::transport::tls::ChannelBinding;
use crate::transport::{Flow, Inbox, Outbox, SessionHandler};
use crate::wamp::cryptosign;
use crate::wamp::{Dict, Id, Message, Protocol, Value, errors, options};

struct Challenged {
    decision: Decision,
    /// What the client must sign: the challenge, XORed with the channel id when bound.
    signed_message: [u8; 32],
    hello: HelloRequest,
    client_roles: Dict,
}

enum Phase {
    AwaitHello,
    Challenged(Box<Challenged>),
    Established { realm: Arc<Realm>, id: Id },
    Closed,
}

pub struct Session {
    router: Arc<Router>,
    peer: String,
    /// The channel ids the connection's TLS offers (none on plain TCP).
    binding: ChannelBinding,
    protocol: Protocol,
    tx: Outbox,
    kill: Arc<Notify>,
    phase: Phase,
}

impl Session {
    pub fn open(
        router: Arc<Router>,
        peer: SocketAddr,
        protocol: Protocol,
        binding: ChannelBinding,
    ) -> (Session, Inbox, Arc<Notify>) {
        let (tx, rx) = crate::transport::outbox(router.options.outbound);
        let kill = Arc::new(Notify::new());
        let peer = match peer {
            SocketAddr::V4(a) => format!("tcp4:{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("tcp6:{}:{}", a.ip(), a.port()),
        };
        let session = Session {
            router,
            peer,
            binding,
            protocol,
            tx,
            kill: kill.clone(),
            phase: Phase::AwaitHello,
        };
        (session, rx, kill)
    }

    fn send(&self, msg: Message) {
        // Our own outbox: before WELCOME nothing else writes to it, so it cannot be full.
        let _ = self.tx.try_send(Outgoing::Message(Outbound::new(msg)));
    }

    fn abort(&mut self, reason: &str, message: impl Into<String>) -> Flow {
        let message = message.into();
        tracing::info!(peer = %self.peer, reason, %message, "session aborted");
        // Before WELCOME (the phase is `Closed` while a HELLO or AUTHENTICATE is handled)
        // an ABORT refuses the session: counted by its reason.
        if !matches!(self.phase, Phase::Established { .. }) {
            crate::metrics::meters().count_auth_rejected(reason);
        }
        self.send(Message::Abort {
            details: crate::dict! {"message" => message},
            reason: reason.to_owned(),
        });
        self.leave();
        Flow::Close
    }

    fn leave(&mut self) {
        if let Phase::Established { realm, id } = std::mem::replace(&mut self.phase, Phase::Closed)
        {
            realm.detach(id);
        }
    }

    async fn on_hello(&mut self, realm: Option<String>, details: Dict) -> Flow {
        let text = |k: &str| details.get(k).and_then(Value::as_str).map(str::to_owned);
        let hello = HelloRequest {
            realm,
            authid: text("authid"),
            authrole: text("authrole"),
            authmethods: details
                .get("authmethods")
                .and_then(Value::as_list)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            authextra: details
                .get("authextra")
                .and_then(Value::as_dict)
                .cloned()
                .unwrap_or_default(),
            peer: self.peer.clone(),
        };
        let client_roles = details
            .get("roles")
            .and_then(Value::as_dict)
            .cloned()
            .unwrap_or_default();
        if client_roles.is_empty() {
            return self.abort(
                errors::PROTOCOL_VIOLATION,
                "HELLO.Details.roles must announce at least one role",
            );
        }
        // The binding is checked before the authenticator runs, so a bad request has no
        // side effects (no activation code is issued for it).
        let binding = match hello.authextra.get("channel_binding") {
            None | Some(Value::Null) => None,
            Some(Value::Str(kind)) if ChannelBinding::KINDS.contains(&kind.as_str()) => {
                // Plain ws:// has no channel id: the binding is answered with none and the
                // client signs the plain challenge (as Crossbar's older routers did).
                self.binding.id(kind).map(|id| (kind.clone(), id))
            }
            Some(other) => {
                return self.abort(
                    errors::INVALID_ARGUMENT,
                    format!(
                        "channel_binding {other:?} is not one of {:?}",
                        ChannelBinding::KINDS
                    ),
                );
            }
        };
        let decision = match self.router.authenticator.authenticate(&hello).await {
            Ok(d) => d,
            Err(Denied { uri, message }) => return self.abort(&uri, message),
        };
        match decision.cryptosign_key {
            Some(_) => {
                let challenge = cryptosign::new_challenge();
                let (kind, signed_message) = match binding {
                    Some((kind, id)) => (Value::Str(kind), cryptosign::bind(&challenge, &id)),
                    None => (Value::Null, challenge),
                };
                self.send(Message::Challenge {
                    authmethod: "cryptosign".into(),
                    extra: crate::dict! {"challenge" => hex::encode(challenge), "channel_binding" => kind},
                });
                self.phase = Phase::Challenged(Box::new(Challenged {
                    decision,
                    signed_message,
                    hello,
                    client_roles,
                }));
                Flow::Continue
            }
            None => self.welcome(decision, &client_roles),
        }
    }

    fn welcome(&mut self, decision: Decision, client_roles: &Dict) -> Flow {
        let p = decision.principal;
        let Some(realm) = self.router.realm(&p.realm) else {
            return self.abort(
                errors::NO_SUCH_REALM,
                format!("no realm \"{}\" exists on this router", p.realm),
            );
        };
        // Internal roles are refused under either name, so no client holds the master's
        // permissions whatever an authenticator says.
        let role = match realm.client_role(&p.authrole) {
            Some(role) => match p.policy_role {
                Some(policy) => realm.client_role(policy),
                None => Some(role),
            },
            None => None,
        };
        let Some(role) = role else {
            return self.abort(
                errors::NO_SUCH_ROLE,
                format!("realm \"{}\" has no role \"{}\"", p.realm, p.authrole),
            );
        };
        let id = crate::wamp::random_id();
        let mut authextra = p.authextra.clone();
        authextra.insert(
            "x_cb_node".into(),
            self.router.options.node_name.as_str().into(),
        );
        authextra.insert("x_cb_worker".into(), "fabric-master".into());
        authextra.insert("x_cb_peer".into(), self.peer.as_str().into());
        authextra.insert("x_cb_pid".into(), u64::from(std::process::id()).into());
        let feature = |role: &str, f: &str| {
            client_roles
                .get(role)
                .and_then(Value::as_dict)
                .and_then(|r| r.get("features"))
                .and_then(Value::as_dict)
                .and_then(|fs| fs.get(f))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let info = SessionInfo {
            id,
            realm: p.realm.clone(),
            authid: p.authid.clone(),
            authrole: p.authrole.clone(),
            authmethod: p.authmethod.to_owned(),
            authprovider: p.authprovider.to_owned(),
            authextra: authextra.clone(),
            peer: self.peer.clone(),
            protocol: self.protocol.to_string(),
            callee_call_canceling: feature("callee", "call_canceling"),
            callee_progressive_results: feature("callee", "progressive_call_results"),
            joined: crate::clock::now_iso(),
        };
        let details = crate::dict! {
            "realm" => p.realm.as_str(),
            "authid" => p.authid.as_str(),
            "authrole" => p.authrole.as_str(),
            "authmethod" => p.authmethod,
            "authprovider" => p.authprovider,
            "authextra" => Value::Dict(authextra),
            "roles" => Value::Dict(router_roles()),
        };
        // WELCOME goes into the outbox before the session becomes reachable, so it is first.
        self.send(Message::Welcome {
            session: id,
            details,
        });
        realm.attach(
            info,
            role,
            Some(self.router.options.session_limits),
            self.tx.clone(),
            self.kill.clone(),
        );
        tracing::debug!(session = id, realm = %p.realm, authid = %p.authid, authrole = %p.authrole, "session joined");
        self.phase = Phase::Established { realm, id };
        Flow::Continue
    }
}

fn router_roles() -> Dict {
    let features = |names: &[&str]| {
        let mut d = Dict::new();
        for n in names {
            d.insert((*n).to_owned(), Value::Bool(true));
        }
        crate::dict! {"features" => Value::Dict(d)}
    };
    crate::dict! {
        "broker" => Value::Dict(features(&[
            "publisher_identification", "publisher_exclusion", "subscriber_blackwhite_listing",
            "pattern_based_subscription", "subscription_meta_api", "session_meta_api", "payload_passthru_mode",
        ])),
        "dealer" => Value::Dict(features(&[
            "caller_identification", "pattern_based_registration", "shared_registration", "progressive_call_results",
            "call_canceling", "call_timeout", "registration_meta_api", "session_meta_api", "payload_passthru_mode",
        ])),
    }
}

impl SessionHandler for Session {
    async fn on_message(&mut self, msg: Message) -> Flow {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::AwaitHello => match msg {
                Message::Hello { realm, details } => self.on_hello(realm, details).await,
                Message::Abort { .. } => Flow::Close,
                other => self.abort(
                    errors::PROTOCOL_VIOLATION,
                    format!("expected HELLO, got {}", other.name()),
                ),
            },
            Phase::Challenged(c) => match msg {
                Message::Authenticate { signature, .. } => {
                    let Challenged {
                        decision,
                        signed_message,
                        hello,
                        client_roles,
                    } = *c;
                    let key = decision
                        .cryptosign_key
                        .expect("challenged sessions have a key");
                    match cryptosign::verify(&key, &signed_message, &signature) {
                        Ok(()) => self.welcome(decision, &client_roles),
                        Err(e) => {
                            tracing::info!(peer = %hello.peer, authid = ?hello.authid, "cryptosign failed: {e}");
                            self.abort(errors::NOT_AUTHORIZED, format!("WAMP-CRYPTOSIGN {e}"))
                        }
                    }
                }
                Message::Abort { .. } => Flow::Close,
                other => self.abort(
                    errors::PROTOCOL_VIOLATION,
                    format!("expected AUTHENTICATE, got {}", other.name()),
                ),
            },
            Phase::Established { realm, id } => {
                self.phase = Phase::Established {
                    realm: realm.clone(),
                    id,
                };
                match msg {
                    Message::Goodbye { .. } => {
                        // A GOODBYE that answers the router's own (the session was closed
                        // by the router) is not answered again.
                        if realm.is_member(id) {
                            self.send(Message::Goodbye {
                                details: Dict::new(),
                                reason: errors::CLOSE_GOODBYE_AND_OUT.into(),
                            });
                        }
                        self.leave();
                        Flow::Close
                    }
                    Message::Abort { .. } => {
                        self.leave();
                        Flow::Close
                    }
                    msg => {
                        if let Err(e) = options::validate(&msg) {
                            return self.abort(errors::PROTOCOL_VIOLATION, e.to_string());
                        }
                        match realm.handle(id, msg) {
                            Ok(()) => Flow::Continue,
                            Err(e) => self.abort(errors::PROTOCOL_VIOLATION, e.0),
                        }
                    }
                }
            }
            Phase::Closed => Flow::Close,
        }
    }

    fn on_garbage(&mut self, why: String) -> Flow {
        self.abort(errors::PROTOCOL_VIOLATION, why)
    }

    fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established { .. })
    }

    fn on_close(&mut self) {
        self.leave();
    }
}
