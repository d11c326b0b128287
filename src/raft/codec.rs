//! The encoding of raft entries, metadata and RPCs: MessagePack with field names, so
//! internally tagged and flattened serde types round-trip, at a fraction of JSON's cost.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("raft types serialize")
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(b)
}
