//! WAMP v2: messages, serializers, URI rules and error URIs. Pure code, no I/O.

pub mod call_error;
pub mod cryptosign;
pub mod errors;
pub mod message;
pub mod options;
pub mod serializer;
pub mod uri;
pub mod value;

pub use call_error::CallError;
pub use message::{Id, Message, MessageError, Payload};
pub use serializer::{CodecError, Protocol, Serializer};
pub use value::{Dict, JsonValue, List, Value};

/// Session-scope and global ids: random in [1, 2^53].
pub fn random_id() -> Id {
    use rand::Rng;
    rand::thread_rng().gen_range(1..=message::MAX_ID)
}
