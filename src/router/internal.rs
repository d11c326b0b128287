//! Sessions inside the process. The management backends register and answer procedures
//! through the same dealer as network sessions, so permissions, timeouts, cancellation and
//! the meta API treat them alike; only the encoding and the socket are skipped.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use std::collections::HashMap;

use tokio::sync::oneshot;

use super::Realm;
use super::session_info::SessionInfo;
use crate::transport::Outgoing;
pub use crate::wamp::CallError;
use crate::wamp::message::code;
use crate::wamp::{Dict, Id, Message, Payload, Value, random_id};

/// A call as a backend sees it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub procedure: String,
    pub payload: Payload,
    pub details: Dict,
}

impl Invocation {
    pub fn args(&self) -> &[Value] {
        match &self.payload.args {
            Some(Value::List(l)) => l,
            _ => &[],
        }
    }
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args().get(i)
    }
    pub fn kwarg(&self, name: &str) -> Option<&Value> {
        self.payload.kwargs.as_ref().and_then(|k| k.get(name))
    }
    /// The caller's authid (the registration asks for disclosure).
    pub fn caller_authid(&self) -> Option<&str> {
        self.details.get("caller_authid").and_then(Value::as_str)
    }
    pub fn caller_authrole(&self) -> Option<&str> {
        self.details.get("caller_authrole").and_then(Value::as_str)
    }
}

/// An event delivered to an internal subscriber.
#[derive(Debug, Clone)]
pub struct Event {
    pub topic: String,
    pub payload: Payload,
}

impl Event {
    pub fn args(&self) -> &[Value] {
        match &self.payload.args {
            Some(Value::List(l)) => l,
            _ => &[],
        }
    }
}

pub type EventHandler = Arc<dyn Fn(Event) + Send + Sync>;

/// Calls made by an internal session wait here for their RESULT or ERROR.
type Pending = parking_lot::Mutex<HashMap<Id, oneshot::Sender<Result<Payload, CallError>>>>;

/// Makes calls as an internal session; cheap to clone and usable from any task.
#[derive(Clone)]
pub struct Caller {
    realm: Arc<Realm>,
    id: Id,
    pending: Arc<Pending>,
}

impl Caller {
    /// Calls `procedure` through the realm's dealer; gives up after `timeout`.
    pub async fn call(
        &self,
        procedure: &str,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError> {
        let request = random_id();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(request, tx);
        let sent = self.realm.handle(
            self.id,
            Message::Call {
                request,
                options: Dict::new(),
                procedure: procedure.to_owned(),
                payload,
            },
        );
        if let Err(e) = sent {
            self.pending.lock().remove(&request);
            return Err(CallError::new("wamp.error.runtime_error", e.0));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(CallError::new(
                "wamp.error.canceled",
                format!("the master's session on {} closed", self.realm.name),
            )),
            Err(_) => {
                self.pending.lock().remove(&request);
                let _ = self.realm.handle(
                    self.id,
                    Message::Cancel {
                        request,
                        options: crate::dict! {"mode" => "killnowait"},
                    },
                );
                Err(CallError::new(
                    "wamp.error.timeout",
                    format!(
                        "{procedure} did not answer within {} ms",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }
}

/// The `protocol` of internal sessions in the session details.
pub const PROTOCOL: &str = "internal";

pub type Handler =
    Arc<dyn Fn(Invocation) -> BoxFuture<'static, Result<Payload, CallError>> + Send + Sync>;

pub struct InternalSession {
    realm: Arc<Realm>,
    id: Id,
    rx: crate::transport::Inbox,
    handlers: HashMap<Id, (String, Handler)>,
    subscribers: HashMap<Id, (String, EventHandler)>,
    pending: Arc<Pending>,
}

impl InternalSession {
    /// Joins `realm` as `authid`/`authrole` (a role the realm has).
    pub fn join(realm: Arc<Realm>, authid: &str, authrole: &str) -> InternalSession {
        InternalSession::join_with_permissions_of(realm, authid, authrole, authrole)
    }

    /// Joins `realm` as `authid`/`authrole` with the permissions of `policy_role` (a role
    /// the realm has, internal ones included).
    pub fn join_with_permissions_of(
        realm: Arc<Realm>,
        authid: &str,
        authrole: &str,
        policy_role: &str,
    ) -> InternalSession {
        let role = realm
            .role(policy_role)
            .unwrap_or_else(|| panic!("realm {} has no role {policy_role}", realm.name));
        let (tx, rx) = crate::transport::outbox(crate::transport::Budget::unlimited(65_536));
        let id = random_id();
        let info = SessionInfo {
            id,
            realm: realm.name.clone(),
            authid: authid.to_owned(),
            authrole: authrole.to_owned(),
            authmethod: "trusted".into(),
            authprovider: "internal".into(),
            authextra: Dict::new(),
            peer: "internal".into(),
            protocol: PROTOCOL.into(),
            callee_call_canceling: false,
            callee_progressive_results: false,
            joined: crate::clock::now_iso(),
        };
        realm.attach(info, role, None, tx, Arc::new(tokio::sync::Notify::new()));
        InternalSession {
            realm,
            id,
            rx,
            handlers: Default::default(),
            subscribers: Default::default(),
            pending: Default::default(),
        }
    }

    /// The session's id in its realm.
    pub fn id(&self) -> Id {
        self.id
    }

    /// A handle for making calls as this session (answered once `serve` runs).
    pub fn caller(&self) -> Caller {
        Caller {
            realm: self.realm.clone(),
            id: self.id,
            pending: self.pending.clone(),
        }
    }

    /// Subscribes to `topic` (exact, or prefix with `prefix`); events go to `handler`, which
    /// runs on the session's task and must not block.
    pub async fn subscribe(
        &mut self,
        topic: &str,
        prefix: bool,
        handler: EventHandler,
    ) -> Result<Id, CallError> {
        let request = random_id();
        let mut options = Dict::new();
        if prefix {
            options.insert("match".into(), "prefix".into());
        }
        self.realm
            .handle(
                self.id,
                Message::Subscribe {
                    request,
                    options,
                    topic: topic.to_owned(),
                },
            )
            .map_err(|e| CallError::new("wamp.error.runtime_error", e.0))?;
        match self.answer(topic).await? {
            Message::Subscribed { subscription, .. } => {
                self.subscribers
                    .insert(subscription, (topic.to_owned(), handler));
                Ok(subscription)
            }
            Message::Error { error, .. } => Err(CallError::new(&error, topic)),
            other => Err(CallError::new(
                "wamp.error.runtime_error",
                format!("unexpected answer to SUBSCRIBE: {other:?}"),
            )),
        }
    }

    /// The next message, which answers a request made before `serve`.
    async fn answer(&mut self, what: &str) -> Result<Message, CallError> {
        match tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await {
            Ok(Some(Outgoing::Message(out))) => Ok(out.message.clone()),
            _ => Err(CallError::new(
                "wamp.error.runtime_error",
                format!("no answer to the request for {what}"),
            )),
        }
    }

    /// Registers `procedure` (exact, or prefix with `prefix`) with caller disclosure.
    pub async fn register(
        &mut self,
        procedure: &str,
        prefix: bool,
        handler: Handler,
    ) -> Result<Id, CallError> {
        let request = random_id();
        let mut options = crate::dict! { "disclose_caller" => true };
        if prefix {
            options.insert("match".into(), "prefix".into());
        }
        self.realm
            .handle(
                self.id,
                Message::Register {
                    request,
                    options,
                    procedure: procedure.to_owned(),
                },
            )
            .map_err(|e| CallError::new("wamp.error.runtime_error", e.0))?;
        match self.answer(procedure).await? {
            Message::Registered { registration, .. } => {
                self.handlers
                    .insert(registration, (procedure.to_owned(), handler));
                Ok(registration)
            }
            Message::Error { error, .. } => Err(CallError::new(&error, procedure)),
            other => Err(CallError::new(
                "wamp.error.runtime_error",
                format!("unexpected answer to REGISTER: {other:?}"),
            )),
        }
    }

    /// Answers invocations until the realm drops the session.
    pub async fn serve(mut self) {
        while let Some(out) = self.rx.recv().await {
            let Outgoing::Message(out) = out else { break };
            let (request, registration, details, payload) = match out.message.clone() {
                Message::Invocation {
                    request,
                    registration,
                    details,
                    payload,
                } => (request, registration, details, payload),
                Message::Event {
                    subscription,
                    details,
                    payload,
                    ..
                } => {
                    if let Some((subscribed, h)) = self.subscribers.get(&subscription) {
                        let topic = details
                            .get("topic")
                            .and_then(Value::as_str)
                            .unwrap_or(subscribed)
                            .to_owned();
                        h(Event { topic, payload });
                    }
                    continue;
                }
                Message::Result {
                    request, payload, ..
                } => {
                    if let Some(tx) = self.pending.lock().remove(&request) {
                        let _ = tx.send(Ok(payload));
                    }
                    continue;
                }
                Message::Error {
                    request_type: code::CALL,
                    request,
                    error,
                    payload,
                    ..
                } => {
                    if let Some(tx) = self.pending.lock().remove(&request) {
                        let _ = tx.send(Err(CallError::passed_on(error, payload)));
                    }
                    continue;
                }
                _ => continue,
            };
            let Some((uri, handler)) = self.handlers.get(&registration).cloned() else {
                continue;
            };
            let procedure = details
                .get("procedure")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or(uri);
            let realm = self.realm.clone();
            let sid = self.id;
            tokio::spawn(async move {
                let inv = Invocation {
                    procedure,
                    payload,
                    details,
                };
                let reply = match handler(inv).await {
                    Ok(payload) => Message::Yield {
                        request,
                        options: Dict::new(),
                        payload,
                    },
                    Err(e) => Message::Error {
                        request_type: code::INVOCATION,
                        request,
                        details: Dict::new(),
                        error: e.uri.clone(),
                        payload: e.into_payload(),
                    },
                };
                // The realm only refuses messages from sessions that are gone.
                let _ = realm.handle(sid, reply);
            });
        }
    }
}
