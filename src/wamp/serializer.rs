//! The three WAMP serializers and the `.batched` WebSocket framing.

use std::fmt;

use serde::Serialize;

use super::message::{Message, MessageError};
use super::value::{Value, decode_json_binary};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Serializer {
    Json,
    MsgPack,
    Cbor,
}

/// A negotiated WebSocket subprotocol: a serializer, optionally batched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Protocol {
    pub serializer: Serializer,
    pub batched: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed {serializer} payload: {reason}")]
    Malformed {
        serializer: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("batched frame is truncated")]
    TruncatedBatch,
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// The deepest nesting of lists and dicts a message may have, whatever its serializer.
pub const MAX_NESTING: usize = 100;

/// What autobahn and Crossbar put after each JSON message of a batch (`b"\30"`, octal: 0x18).
pub const JSON_BATCH_SEPARATOR: u8 = 0x18;

/// Subprotocols we accept, in order of our preference.
pub const SUBPROTOCOLS: [&str; 6] = [
    "wamp.2.cbor",
    "wamp.2.msgpack",
    "wamp.2.json",
    "wamp.2.cbor.batched",
    "wamp.2.msgpack.batched",
    "wamp.2.json.batched",
];

impl Serializer {
    pub fn name(self) -> &'static str {
        match self {
            Serializer::Json => "json",
            Serializer::MsgPack => "msgpack",
            Serializer::Cbor => "cbor",
        }
    }

    /// JSON travels in WebSocket text frames, the others in binary frames.
    pub fn is_text(self) -> bool {
        self == Serializer::Json
    }

    pub fn encode(self, msg: &Message) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(msg, &mut out)?;
        Ok(out)
    }

    pub fn encode_into(self, msg: &Message, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let wire = Wire {
            msg,
            json: self == Serializer::Json,
        };
        match self {
            Serializer::Json => serde_json::to_writer(&mut *out, &wire)
                .map_err(|e| CodecError::Encode(e.to_string())),
            Serializer::MsgPack => {
                let mut ser = rmp_serde::Serializer::new(&mut *out);
                wire.serialize(&mut ser)
                    .map_err(|e| CodecError::Encode(e.to_string()))
            }
            Serializer::Cbor => ciborium::ser::into_writer(&wire, &mut *out)
                .map_err(|e| CodecError::Encode(e.to_string())),
        }
    }

    pub fn decode_value(self, bytes: &[u8]) -> Result<Value, CodecError> {
        let malformed = |reason: String| CodecError::Malformed {
            serializer: self.name(),
            reason,
        };
        let value = self.decode_unchecked(bytes).map_err(malformed)?;
        // One limit for every serializer (their decoders stop at 128, 256 or 1,024 levels):
        // what is accepted here must also be readable back from the store, whose JSON reader
        // stops at 128 levels; records nest a value at most one level deeper than a message.
        if value.nests_deeper_than(MAX_NESTING) {
            return Err(malformed(format!(
                "values nest deeper than {MAX_NESTING} levels"
            )));
        }
        Ok(value)
    }

    fn decode_unchecked(self, bytes: &[u8]) -> Result<Value, String> {
        match self {
            Serializer::Json => {
                let mut v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                decode_json_binary(&mut v).map_err(|e| format!("bad binary string: {e}"))?;
                Ok(v)
            }
            Serializer::MsgPack => {
                let mut de = rmp_serde::Deserializer::new(bytes);
                let v = serde::Deserialize::deserialize(&mut de).map_err(|e| e.to_string())?;
                if !de.get_ref().is_empty() {
                    return Err("trailing bytes".into());
                }
                Ok(v)
            }
            Serializer::Cbor => {
                let mut reader = bytes;
                let v = ciborium::de::from_reader(&mut reader).map_err(|e| e.to_string())?;
                if !reader.is_empty() {
                    return Err("trailing bytes".into());
                }
                Ok(v)
            }
        }
    }

    pub fn decode(self, bytes: &[u8]) -> Result<Message, CodecError> {
        Ok(Message::from_value(self.decode_value(bytes)?)?)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "wamp.2.{}{}",
            self.serializer.name(),
            if self.batched { ".batched" } else { "" }
        )
    }
}

impl Protocol {
    pub fn parse(name: &str) -> Option<Protocol> {
        let rest = name.strip_prefix("wamp.2.")?;
        let (ser, batched) = match rest.strip_suffix(".batched") {
            Some(s) => (s, true),
            None => (rest, false),
        };
        let serializer = match ser {
            "json" => Serializer::Json,
            "msgpack" => Serializer::MsgPack,
            "cbor" => Serializer::Cbor,
            _ => return None,
        };
        Some(Protocol {
            serializer,
            batched,
        })
    }

    /// Picks the first subprotocol the client offers that we speak (client order wins).
    pub fn negotiate<'a>(
        offered: impl IntoIterator<Item = &'a str>,
    ) -> Option<(Protocol, &'a str)> {
        offered
            .into_iter()
            .find_map(|name| Protocol::parse(name.trim()).map(|p| (p, name.trim())))
    }

    /// Splits one WebSocket message into the WAMP messages it carries.
    pub fn decode_frame(self, frame: &[u8]) -> Result<Vec<Message>, CodecError> {
        if !self.batched {
            return Ok(vec![self.serializer.decode(frame)?]);
        }
        let mut out = Vec::new();
        match self.serializer {
            Serializer::Json => {
                // Raw control bytes never occur inside JSON text, so either separator is safe to split on.
                for part in frame
                    .split(|b| *b == JSON_BATCH_SEPARATOR || *b == 0x1e)
                    .filter(|p| !p.is_empty())
                {
                    out.push(self.serializer.decode(part)?);
                }
            }
            _ => {
                let mut rest = frame;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(CodecError::TruncatedBatch);
                    }
                    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    let body = rest.get(4..4 + len).ok_or(CodecError::TruncatedBatch)?;
                    out.push(self.serializer.decode(body)?);
                    rest = &rest[4 + len..];
                }
            }
        }
        Ok(out)
    }

    /// Appends one already encoded message to a batched frame under construction.
    pub fn frame_encoded(self, encoded: &[u8], frame: &mut Vec<u8>) -> Result<(), CodecError> {
        match self.serializer {
            Serializer::Json => {
                frame.extend_from_slice(encoded);
                frame.push(JSON_BATCH_SEPARATOR);
            }
            _ => {
                let len = u32::try_from(encoded.len())
                    .map_err(|_| CodecError::Encode("message over 4 GiB".into()))?;
                frame.extend_from_slice(&len.to_be_bytes());
                frame.extend_from_slice(encoded);
            }
        }
        Ok(())
    }

    /// Appends one message to a frame under construction (batched protocols may carry many).
    pub fn encode_into_frame(self, msg: &Message, frame: &mut Vec<u8>) -> Result<(), CodecError> {
        if !self.batched {
            return self.serializer.encode_into(msg, frame);
        }
        match self.serializer {
            Serializer::Json => {
                self.serializer.encode_into(msg, frame)?;
                frame.push(JSON_BATCH_SEPARATOR);
            }
            _ => {
                let start = frame.len();
                frame.extend_from_slice(&[0; 4]);
                self.serializer.encode_into(msg, frame)?;
                let len = u32::try_from(frame.len() - start - 4)
                    .map_err(|_| CodecError::Encode("message over 4 GiB".into()))?;
                frame[start..start + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Ok(())
    }
}

struct Wire<'a> {
    msg: &'a Message,
    json: bool,
}

impl Serialize for Wire<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.msg.serialize_with(s, self.json)
    }
}
