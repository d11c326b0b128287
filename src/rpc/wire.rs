//! What crosses the wire between replicas besides Raft's own messages.

use crate::wamp::{Dict, Payload, Value};

/// A WAMP payload as it travels between replicas.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct WirePayload {
    pub args: Option<Value>,
    /// A `Value::Dict`.
    pub kwargs: Option<Value>,
}

impl From<Payload> for WirePayload {
    fn from(p: Payload) -> WirePayload {
        WirePayload {
            args: p.args,
            kwargs: p.kwargs.map(Value::Dict),
        }
    }
}

impl From<WirePayload> for Payload {
    fn from(p: WirePayload) -> Payload {
        Payload {
            args: p.args,
            kwargs: match p.kwargs {
                Some(Value::Dict(d)) => Some(d),
                _ => None,
            },
        }
    }
}

/// The answer to a routed node call: the result, or (error URI, error payload).
pub type WireResult = Result<WirePayload, (String, WirePayload)>;

/// One publication as it travels between replicas.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct WireEvent {
    pub realm: String,
    pub topic: String,
    /// The PUBLISH options that pick the audience (a `Value::Dict`).
    pub options: Value,
    /// Details every event carries (publisher disclosure), a `Value::Dict`.
    pub details: Value,
    pub payload: WirePayload,
}

impl WireEvent {
    pub fn into_parts(self) -> (String, String, Dict, Dict, Payload) {
        let options = dict_of(&self.options);
        let details = dict_of(&self.details);
        (
            self.realm,
            self.topic,
            options,
            details,
            self.payload.into(),
        )
    }
}

fn dict_of(v: &Value) -> Dict {
    match v {
        Value::Dict(d) => d.clone(),
        _ => Dict::new(),
    }
}
