//! Typed WAMP v2 messages (basic and advanced profile) and their array form.
//!
//! Long because it is one enum and its codec for all 25 WAMP messages: each arm is a few
//! lines and they read best side by side with the spec's message table.

use serde::ser::{SerializeSeq, Serializer};

use super::value::{Dict, JsonValue, Value};

pub type Id = u64;

/// Message type codes from the WAMP specification.
pub mod code {
    pub const HELLO: u64 = 1;
    pub const WELCOME: u64 = 2;
    pub const ABORT: u64 = 3;
    pub const CHALLENGE: u64 = 4;
    pub const AUTHENTICATE: u64 = 5;
    pub const GOODBYE: u64 = 6;
    pub const ERROR: u64 = 8;
    pub const PUBLISH: u64 = 16;
    pub const PUBLISHED: u64 = 17;
    pub const SUBSCRIBE: u64 = 32;
    pub const SUBSCRIBED: u64 = 33;
    pub const UNSUBSCRIBE: u64 = 34;
    pub const UNSUBSCRIBED: u64 = 35;
    pub const EVENT: u64 = 36;
    pub const CALL: u64 = 48;
    pub const CANCEL: u64 = 49;
    pub const RESULT: u64 = 50;
    pub const REGISTER: u64 = 64;
    pub const REGISTERED: u64 = 65;
    pub const UNREGISTER: u64 = 66;
    pub const UNREGISTERED: u64 = 67;
    pub const INVOCATION: u64 = 68;
    pub const INTERRUPT: u64 = 69;
    pub const YIELD: u64 = 70;
    pub const EVENT_RECEIVED: u64 = 337;
}

/// Positional and keyword payload. `args` is a list, or raw bytes under payload passthru mode.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Payload {
    pub args: Option<Value>,
    pub kwargs: Option<Dict>,
}

impl Payload {
    pub fn args(args: Vec<Value>) -> Self {
        Payload {
            args: Some(Value::List(args)),
            kwargs: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_none() && self.kwargs.is_none()
    }

    /// The positional arguments as a list (empty when absent or transparent).
    pub fn arg_list(&self) -> &[Value] {
        match &self.args {
            Some(Value::List(l)) => l,
            _ => &[],
        }
    }

    pub fn kwarg(&self, key: &str) -> Option<&Value> {
        self.kwargs.as_ref().and_then(|k| k.get(key))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Hello {
        realm: Option<String>,
        details: Dict,
    },
    Welcome {
        session: Id,
        details: Dict,
    },
    Abort {
        details: Dict,
        reason: String,
    },
    Challenge {
        authmethod: String,
        extra: Dict,
    },
    Authenticate {
        signature: String,
        extra: Dict,
    },
    Goodbye {
        details: Dict,
        reason: String,
    },
    Error {
        request_type: u64,
        request: Id,
        details: Dict,
        error: String,
        payload: Payload,
    },
    Publish {
        request: Id,
        options: Dict,
        topic: String,
        payload: Payload,
    },
    Published {
        request: Id,
        publication: Id,
    },
    Subscribe {
        request: Id,
        options: Dict,
        topic: String,
    },
    Subscribed {
        request: Id,
        subscription: Id,
    },
    Unsubscribe {
        request: Id,
        subscription: Id,
    },
    /// `details` is present when the router revokes a subscription (request is then 0).
    Unsubscribed {
        request: Id,
        details: Option<Dict>,
    },
    Event {
        subscription: Id,
        publication: Id,
        details: Dict,
        payload: Payload,
    },
    EventReceived {
        publication: Id,
        details: Option<Dict>,
        payload: Payload,
    },
    Call {
        request: Id,
        options: Dict,
        procedure: String,
        payload: Payload,
    },
    Cancel {
        request: Id,
        options: Dict,
    },
    Result {
        request: Id,
        details: Dict,
        payload: Payload,
    },
    Register {
        request: Id,
        options: Dict,
        procedure: String,
    },
    Registered {
        request: Id,
        registration: Id,
    },
    Unregister {
        request: Id,
        registration: Id,
    },
    Unregistered {
        request: Id,
        details: Option<Dict>,
    },
    Invocation {
        request: Id,
        registration: Id,
        details: Dict,
        payload: Payload,
    },
    Interrupt {
        request: Id,
        options: Dict,
    },
    Yield {
        request: Id,
        options: Dict,
        payload: Payload,
    },
}

impl Message {
    /// Roughly how many bytes the message takes encoded: its payload, details or options,
    /// and a fixed allowance for ids and URIs. Byte budgets count this.
    pub fn approx_size(&self) -> usize {
        use Message::*;
        let dict = |d: &Dict| {
            d.iter()
                .map(|(k, v)| k.len() + 2 + v.approx_size())
                .sum::<usize>()
        };
        let payload = |p: &Payload| {
            p.args.as_ref().map_or(0, Value::approx_size) + p.kwargs.as_ref().map_or(0, &dict)
        };
        64 + match self {
            Error {
                details,
                payload: p,
                error,
                ..
            } => dict(details) + payload(p) + error.len(),
            Publish {
                options,
                topic,
                payload: p,
                ..
            } => dict(options) + payload(p) + topic.len(),
            Event {
                details,
                payload: p,
                ..
            }
            | Result {
                details,
                payload: p,
                ..
            } => dict(details) + payload(p),
            Invocation {
                details,
                payload: p,
                ..
            } => dict(details) + payload(p),
            EventReceived {
                details,
                payload: p,
                ..
            } => details.as_ref().map_or(0, &dict) + payload(p),
            Call {
                options,
                procedure,
                payload: p,
                ..
            } => dict(options) + payload(p) + procedure.len(),
            Yield {
                options,
                payload: p,
                ..
            } => dict(options) + payload(p),
            Hello { details, realm } => dict(details) + realm.as_ref().map_or(0, String::len),
            Welcome { details, .. } | Challenge { extra: details, .. } => dict(details),
            Abort { details, reason } | Goodbye { details, reason } => dict(details) + reason.len(),
            Authenticate { extra, signature } => dict(extra) + signature.len(),
            _ => 0,
        }
    }
}

/// Why an array could not be read as a WAMP message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("a WAMP message must be a non-empty array")]
    NotAList,
    #[error("unknown message type {0}")]
    UnknownType(u64),
    #[error("message type {kind}: {what}")]
    BadField {
        kind: &'static str,
        what: &'static str,
    },
}

/// Largest valid WAMP id: 2^53.
pub const MAX_ID: u64 = 1 << 53;

struct Reader {
    kind: &'static str,
    items: std::vec::IntoIter<Value>,
}

impl Reader {
    fn bad(&self, what: &'static str) -> MessageError {
        MessageError::BadField {
            kind: self.kind,
            what,
        }
    }

    fn next(&mut self, what: &'static str) -> Result<Value, MessageError> {
        self.items.next().ok_or_else(|| self.bad(what))
    }

    fn id(&mut self, what: &'static str) -> Result<Id, MessageError> {
        match self.next(what)?.as_u64() {
            Some(id) if id <= MAX_ID => Ok(id),
            _ => Err(self.bad(what)),
        }
    }

    fn int(&mut self, what: &'static str) -> Result<u64, MessageError> {
        self.next(what)?.as_u64().ok_or_else(|| self.bad(what))
    }

    fn string(&mut self, what: &'static str) -> Result<String, MessageError> {
        match self.next(what)? {
            Value::Str(s) => Ok(s),
            _ => Err(self.bad(what)),
        }
    }

    fn dict(&mut self, what: &'static str) -> Result<Dict, MessageError> {
        match self.next(what)? {
            Value::Dict(d) => Ok(d),
            _ => Err(self.bad(what)),
        }
    }

    fn opt_dict(&mut self, what: &'static str) -> Result<Option<Dict>, MessageError> {
        match self.items.next() {
            None => Ok(None),
            Some(Value::Dict(d)) => Ok(Some(d)),
            Some(_) => Err(self.bad(what)),
        }
    }

    fn payload(&mut self) -> Result<Payload, MessageError> {
        let args = match self.items.next() {
            None => return self.end(Payload::default()),
            Some(v @ (Value::List(_) | Value::Bytes(_))) => Some(v),
            Some(_) => return Err(self.bad("args must be a list")),
        };
        let kwargs = match self.items.next() {
            None => None,
            Some(Value::Dict(d)) => Some(d),
            Some(_) => return Err(self.bad("kwargs must be a dict")),
        };
        self.end(Payload { args, kwargs })
    }

    fn end<T>(&mut self, t: T) -> Result<T, MessageError> {
        match self.items.next() {
            None => Ok(t),
            Some(_) => Err(self.bad("too many elements")),
        }
    }
}

/// Reads `field: method` pairs in order (each field's name is also what a bad value is
/// reported as), then builds the message, refusing extra elements.
macro_rules! fields {
    [$r:ident, $variant:ident, $($field:ident: $read:ident),+] => {{
        $(let $field = $r.$read(stringify!($field))?;)+
        $r.end(Message::$variant { $($field),+ })?
    }};
}

impl Message {
    pub fn code(&self) -> u64 {
        use Message::*;
        match self {
            Hello { .. } => code::HELLO,
            Welcome { .. } => code::WELCOME,
            Abort { .. } => code::ABORT,
            Challenge { .. } => code::CHALLENGE,
            Authenticate { .. } => code::AUTHENTICATE,
            Goodbye { .. } => code::GOODBYE,
            Error { .. } => code::ERROR,
            Publish { .. } => code::PUBLISH,
            Published { .. } => code::PUBLISHED,
            Subscribe { .. } => code::SUBSCRIBE,
            Subscribed { .. } => code::SUBSCRIBED,
            Unsubscribe { .. } => code::UNSUBSCRIBE,
            Unsubscribed { .. } => code::UNSUBSCRIBED,
            Event { .. } => code::EVENT,
            EventReceived { .. } => code::EVENT_RECEIVED,
            Call { .. } => code::CALL,
            Cancel { .. } => code::CANCEL,
            Result { .. } => code::RESULT,
            Register { .. } => code::REGISTER,
            Registered { .. } => code::REGISTERED,
            Unregister { .. } => code::UNREGISTER,
            Unregistered { .. } => code::UNREGISTERED,
            Invocation { .. } => code::INVOCATION,
            Interrupt { .. } => code::INTERRUPT,
            Yield { .. } => code::YIELD,
        }
    }

    pub fn name(&self) -> &'static str {
        name_of(self.code())
    }

    /// Reads a message from its decoded array form.
    pub fn from_value(v: Value) -> Result<Message, MessageError> {
        let Value::List(items) = v else {
            return Err(MessageError::NotAList);
        };
        let mut items = items.into_iter();
        let code = items
            .next()
            .and_then(|c| c.as_u64())
            .ok_or(MessageError::NotAList)?;
        let kind = name_of(code);
        if kind == "UNKNOWN" {
            return Err(MessageError::UnknownType(code));
        }
        let mut r = Reader { kind, items };
        let msg = match code {
            code::HELLO => {
                let realm = match r.next("realm")? {
                    Value::Null => None,
                    Value::Str(s) => Some(s),
                    _ => return Err(r.bad("realm")),
                };
                let details = r.dict("details")?;
                r.end(Message::Hello { realm, details })?
            }
            code::WELCOME => fields![r, Welcome, session: id, details: dict],
            code::ABORT => fields![r, Abort, details: dict, reason: string],
            code::CHALLENGE => fields![r, Challenge, authmethod: string, extra: dict],
            code::AUTHENTICATE => fields![r, Authenticate, signature: string, extra: dict],
            code::GOODBYE => fields![r, Goodbye, details: dict, reason: string],
            code::ERROR => Message::Error {
                request_type: r.int("request type")?,
                request: r.id("request")?,
                details: r.dict("details")?,
                error: r.string("error")?,
                payload: r.payload()?,
            },
            code::PUBLISH => Message::Publish {
                request: r.id("request")?,
                options: r.dict("options")?,
                topic: r.string("topic")?,
                payload: r.payload()?,
            },
            code::PUBLISHED => fields![r, Published, request: id, publication: id],
            code::SUBSCRIBE => fields![r, Subscribe, request: id, options: dict, topic: string],
            code::SUBSCRIBED => fields![r, Subscribed, request: id, subscription: id],
            code::UNSUBSCRIBE => fields![r, Unsubscribe, request: id, subscription: id],
            code::UNSUBSCRIBED => fields![r, Unsubscribed, request: int, details: opt_dict],
            code::EVENT => Message::Event {
                subscription: r.id("subscription")?,
                publication: r.id("publication")?,
                details: r.dict("details")?,
                payload: r.payload()?,
            },
            code::EVENT_RECEIVED => {
                let publication = r.id("publication")?;
                let details = r.opt_dict("details")?;
                let payload = r.payload()?;
                Message::EventReceived {
                    publication,
                    details,
                    payload,
                }
            }
            code::CALL => Message::Call {
                request: r.id("request")?,
                options: r.dict("options")?,
                procedure: r.string("procedure")?,
                payload: r.payload()?,
            },
            code::CANCEL => fields![r, Cancel, request: id, options: dict],
            code::RESULT => Message::Result {
                request: r.id("request")?,
                details: r.dict("details")?,
                payload: r.payload()?,
            },
            code::REGISTER => fields![r, Register, request: id, options: dict, procedure: string],
            code::REGISTERED => fields![r, Registered, request: id, registration: id],
            code::UNREGISTER => fields![r, Unregister, request: id, registration: id],
            code::UNREGISTERED => fields![r, Unregistered, request: int, details: opt_dict],
            code::INVOCATION => Message::Invocation {
                request: r.id("request")?,
                registration: r.id("registration")?,
                details: r.dict("details")?,
                payload: r.payload()?,
            },
            code::INTERRUPT => fields![r, Interrupt, request: id, options: dict],
            code::YIELD => Message::Yield {
                request: r.id("request")?,
                options: r.dict("options")?,
                payload: r.payload()?,
            },
            other => return Err(MessageError::UnknownType(other)),
        };
        Ok(msg)
    }

    /// Number of array elements on the wire (CBOR and MsgPack need it up front).
    fn wire_len(&self) -> usize {
        fn payload_len(p: &Payload) -> usize {
            match (&p.args, &p.kwargs) {
                (None, None) => 0,
                (_, None) => 1,
                (_, Some(_)) => 2,
            }
        }
        use Message::*;
        match self {
            Hello { .. } | Welcome { .. } | Abort { .. } | Goodbye { .. } => 3,
            Challenge { .. } | Authenticate { .. } => 3,
            Error { payload, .. } => 5 + payload_len(payload),
            Publish { payload, .. } | Call { payload, .. } => 4 + payload_len(payload),
            Published { .. } | Subscribed { .. } | Unsubscribe { .. } => 3,
            Registered { .. } | Unregister { .. } => 3,
            Subscribe { .. } | Register { .. } => 4,
            Unsubscribed { details, .. } | Unregistered { details, .. } => {
                2 + usize::from(details.is_some())
            }
            Event { payload, .. } | Invocation { payload, .. } => 4 + payload_len(payload),
            EventReceived {
                details, payload, ..
            } => {
                let has_details = details.is_some() || !payload.is_empty();
                2 + usize::from(has_details) + payload_len(payload)
            }
            Cancel { .. } | Interrupt { .. } => 3,
            Result { payload, .. } | Yield { payload, .. } => 3 + payload_len(payload),
        }
    }

    /// Serializes the array form; `json` selects the JSON binary convention.
    pub(crate) fn serialize_with<S: Serializer>(
        &self,
        s: S,
        json: bool,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.wire_len()))?;
        let w = Writer { json };
        seq.serialize_element(&self.code())?;
        use Message::*;
        match self {
            Hello { realm, details } => {
                seq.serialize_element(realm)?;
                w.dict(&mut seq, details)?;
            }
            Welcome { session, details } => {
                seq.serialize_element(session)?;
                w.dict(&mut seq, details)?;
            }
            Abort { details, reason } | Goodbye { details, reason } => {
                w.dict(&mut seq, details)?;
                seq.serialize_element(reason)?;
            }
            Challenge {
                authmethod: s,
                extra,
            }
            | Authenticate {
                signature: s,
                extra,
            } => {
                seq.serialize_element(s)?;
                w.dict(&mut seq, extra)?;
            }
            Error {
                request_type,
                request,
                details,
                error,
                payload,
            } => {
                seq.serialize_element(request_type)?;
                seq.serialize_element(request)?;
                w.dict(&mut seq, details)?;
                seq.serialize_element(error)?;
                w.payload(&mut seq, payload)?;
            }
            Publish {
                request,
                options,
                topic: uri,
                payload,
            }
            | Call {
                request,
                options,
                procedure: uri,
                payload,
            } => {
                seq.serialize_element(request)?;
                w.dict(&mut seq, options)?;
                seq.serialize_element(uri)?;
                w.payload(&mut seq, payload)?;
            }
            Published {
                request,
                publication: id,
            }
            | Subscribed {
                request,
                subscription: id,
            }
            | Unsubscribe {
                request,
                subscription: id,
            }
            | Registered {
                request,
                registration: id,
            }
            | Unregister {
                request,
                registration: id,
            } => {
                seq.serialize_element(request)?;
                seq.serialize_element(id)?;
            }
            Subscribe {
                request,
                options,
                topic: uri,
            }
            | Register {
                request,
                options,
                procedure: uri,
            } => {
                seq.serialize_element(request)?;
                w.dict(&mut seq, options)?;
                seq.serialize_element(uri)?;
            }
            Unsubscribed { request, details } | Unregistered { request, details } => {
                seq.serialize_element(request)?;
                if let Some(d) = details {
                    w.dict(&mut seq, d)?;
                }
            }
            Event {
                subscription: a,
                publication: b,
                details,
                payload,
            }
            | Invocation {
                request: a,
                registration: b,
                details,
                payload,
            } => {
                seq.serialize_element(a)?;
                seq.serialize_element(b)?;
                w.dict(&mut seq, details)?;
                w.payload(&mut seq, payload)?;
            }
            EventReceived {
                publication,
                details,
                payload,
            } => {
                seq.serialize_element(publication)?;
                if let Some(d) = details {
                    w.dict(&mut seq, d)?;
                } else if !payload.is_empty() {
                    w.dict(&mut seq, &Dict::new())?;
                }
                w.payload(&mut seq, payload)?;
            }
            Cancel { request, options } | Interrupt { request, options } => {
                seq.serialize_element(request)?;
                w.dict(&mut seq, options)?;
            }
            Result {
                request,
                details: opts,
                payload,
            }
            | Yield {
                request,
                options: opts,
                payload,
            } => {
                seq.serialize_element(request)?;
                w.dict(&mut seq, opts)?;
                w.payload(&mut seq, payload)?;
            }
        }
        seq.end()
    }
}

struct Writer {
    json: bool,
}

impl Writer {
    fn value<S: SerializeSeq>(&self, seq: &mut S, v: &Value) -> Result<(), S::Error> {
        if self.json {
            seq.serialize_element(&JsonValue(v))
        } else {
            seq.serialize_element(v)
        }
    }

    fn dict<S: SerializeSeq>(&self, seq: &mut S, d: &Dict) -> Result<(), S::Error> {
        if self.json {
            seq.serialize_element(&JsonDict(d))
        } else {
            seq.serialize_element(&NativeDict(d))
        }
    }

    fn payload<S: SerializeSeq>(&self, seq: &mut S, p: &Payload) -> Result<(), S::Error> {
        match (&p.args, &p.kwargs) {
            (None, None) => Ok(()),
            (args, kwargs) => {
                match args {
                    Some(a) => self.value(seq, a)?,
                    None => self.value(seq, &Value::List(Vec::new()))?,
                }
                if let Some(k) = kwargs {
                    self.dict(seq, k)?;
                }
                Ok(())
            }
        }
    }
}

struct NativeDict<'a>(&'a Dict);
impl serde::Serialize for NativeDict<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct JsonDict<'a>(&'a Dict);
impl serde::Serialize for JsonDict<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, &JsonValue(v))?;
        }
        m.end()
    }
}

pub fn name_of(code: u64) -> &'static str {
    match code {
        code::HELLO => "HELLO",
        code::WELCOME => "WELCOME",
        code::ABORT => "ABORT",
        code::CHALLENGE => "CHALLENGE",
        code::AUTHENTICATE => "AUTHENTICATE",
        code::GOODBYE => "GOODBYE",
        code::ERROR => "ERROR",
        code::PUBLISH => "PUBLISH",
        code::PUBLISHED => "PUBLISHED",
        code::SUBSCRIBE => "SUBSCRIBE",
        code::SUBSCRIBED => "SUBSCRIBED",
        code::UNSUBSCRIBE => "UNSUBSCRIBE",
        code::UNSUBSCRIBED => "UNSUBSCRIBED",
        code::EVENT => "EVENT",
        code::EVENT_RECEIVED => "EVENT_RECEIVED",
        code::CALL => "CALL",
        code::CANCEL => "CANCEL",
        code::RESULT => "RESULT",
        code::REGISTER => "REGISTER",
        code::REGISTERED => "REGISTERED",
        code::UNREGISTER => "UNREGISTER",
        code::UNREGISTERED => "UNREGISTERED",
        code::INVOCATION => "INVOCATION",
        code::INTERRUPT => "INTERRUPT",
        code::YIELD => "YIELD",
        _ => "UNKNOWN",
    }
}
