//! A refused call, as every layer that answers WAMP calls reports it: the router's internal
//! sessions, the management backends, and calls routed between replicas.

use super::{Payload, Value};

/// A backend's refusal: an ERROR with this URI and a message as the first argument, or
/// with `payload` unchanged when it passes on another callee's error.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub uri: String,
    pub message: String,
    pub payload: Option<Box<Payload>>,
}

impl CallError {
    pub fn new(uri: &str, message: impl Into<String>) -> CallError {
        CallError {
            uri: uri.to_owned(),
            message: message.into(),
            payload: None,
        }
    }

    /// An error received from another callee, passed on with its arguments.
    pub fn passed_on(uri: String, payload: Payload) -> CallError {
        let message = match &payload.args {
            Some(Value::List(l)) => l.first().and_then(Value::as_str).unwrap_or("").to_owned(),
            _ => String::new(),
        };
        CallError {
            uri,
            message,
            payload: Some(Box::new(payload)),
        }
    }

    /// The ERROR's arguments: the passed-on payload, or the message.
    pub fn into_payload(self) -> Payload {
        self.payload.map(|p| *p).unwrap_or_else(|| Payload {
            args: Some(Value::List(vec![Value::Str(self.message)])),
            kwargs: None,
        })
    }
}
