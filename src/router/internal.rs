//! Sessions inside the process. The management backends register and answer procedures
//! through the same dealer as network sessions, so permissions, timeouts, cancellation and
//! the meta API treat them alike; only the encoding and the socket are skipped.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::Realm;
use super::session_info::SessionInfo;
use crate::transport::Outgoing;
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

/// A backend's refusal: an ERROR with this URI and a message as the first argument.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub uri: String,
    pub message: String,
}

impl CallError {
    pub fn new(uri: &str, message: impl Into<String>) -> CallError {
        CallError {
            uri: uri.to_owned(),
            message: message.into(),
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
    rx: mpsc::Receiver<Outgoing>,
    handlers: std::collections::HashMap<Id, (String, Handler)>,
}

impl InternalSession {
    /// Joins `realm` as `authid`/`authrole` (a role the realm has).
    pub fn join(realm: Arc<Realm>, authid: &str, authrole: &str) -> InternalSession {
        let (tx, rx) = mpsc::channel(65_536);
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
            joined: super::now_iso(),
        };
        realm.attach(info, tx, Arc::new(tokio::sync::Notify::new()));
        InternalSession {
            realm,
            id,
            rx,
            handlers: Default::default(),
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
        let answer = tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await;
        match answer {
            Ok(Some(Outgoing::Message(out))) => match &out.message {
                Message::Registered { registration, .. } => {
                    self.handlers
                        .insert(*registration, (procedure.to_owned(), handler));
                    Ok(*registration)
                }
                Message::Error { error, .. } => Err(CallError::new(error, procedure)),
                other => Err(CallError::new(
                    "wamp.error.runtime_error",
                    format!("unexpected answer to REGISTER: {other:?}"),
                )),
            },
            _ => Err(CallError::new(
                "wamp.error.runtime_error",
                format!("no answer to REGISTER {procedure}"),
            )),
        }
    }

    /// Answers invocations until the realm drops the session.
    pub async fn serve(mut self) {
        while let Some(out) = self.rx.recv().await {
            let Outgoing::Message(out) = out else { break };
            let Message::Invocation {
                request,
                registration,
                details,
                payload,
            } = out.message.clone()
            else {
                continue;
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
                        error: e.uri,
                        payload: Payload {
                            args: Some(Value::List(vec![Value::Str(e.message)])),
                            kwargs: None,
                        },
                    },
                };
                // The realm only refuses messages from sessions that are gone.
                let _ = realm.handle(sid, reply);
            });
        }
    }
}
