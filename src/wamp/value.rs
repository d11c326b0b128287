//! The dynamic value carried in WAMP payloads and details dictionaries.
//!
//! One type for all three serializers: JSON has no binary type, so bytes travel there as a
//! string of `\0` followed by base64 (the WAMP convention); CBOR and MsgPack carry them natively.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Insertion-ordered, so a decoded message re-encodes to the same bytes.
pub type Dict = indexmap::IndexMap<String, Value>;
pub type List = Vec<Value>;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    /// Any integer that fits; unsigned values above `i64::MAX` use `UInt`.
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(List),
    Dict(Dict),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(i) if i >= 0 => Some(i as u64),
            Value::UInt(u) => Some(u),
            // Some clients (JavaScript) send integral floats for ids.
            Value::Float(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0 => {
                Some(f as u64)
            }
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::UInt(u) => i64::try_from(u).ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&List> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Roughly how many bytes this value takes encoded (any serializer): what byte budgets
    /// count. Iterative, like `depth`.
    pub fn approx_size(&self) -> usize {
        let mut size = 0;
        let mut stack = vec![self];
        while let Some(v) = stack.pop() {
            size += match v {
                Value::Str(s) => s.len() + 2,
                Value::Bytes(b) => b.len() + 2,
                Value::List(l) => {
                    stack.extend(l.iter());
                    2
                }
                Value::Dict(m) => {
                    size += m.keys().map(|k| k.len() + 2).sum::<usize>();
                    stack.extend(m.values());
                    2
                }
                _ => 9,
            };
        }
        size
    }

    /// Whether lists and dicts nest more than `limit` levels deep (a scalar is 0, a flat
    /// list 1). Runs on every incoming message: no allocation, and it stops one level past
    /// `limit`, so its recursion stays within `limit + 1` whatever the value.
    pub fn nests_deeper_than(&self, limit: usize) -> bool {
        let deeper = |c: &Value| limit == 0 || c.nests_deeper_than(limit - 1);
        match self {
            Value::List(l) => limit == 0 || l.iter().any(deeper),
            Value::Dict(m) => limit == 0 || m.values().any(deeper),
            _ => false,
        }
    }

    /// Truthiness as Python sees it: the edge node decides on `if authextra:`.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::UInt(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<u64> for Value {
    fn from(u: u64) -> Self {
        if u <= i64::MAX as u64 {
            Value::Int(u as i64)
        } else {
            Value::UInt(u)
        }
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Int(i64::from(i))
    }
}
impl From<usize> for Value {
    fn from(u: usize) -> Self {
        Value::from(u as u64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Value::Dict(d)
    }
}
impl From<List> for Value {
    fn from(l: List) -> Self {
        Value::List(l)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Null, Into::into)
    }
}

/// Builds a `Dict` from `key => value` pairs.
#[macro_export]
macro_rules! dict {
    () => { $crate::wamp::Dict::new() };
    ($($k:expr => $v:expr),+ $(,)?) => {{
        let mut d = $crate::wamp::Dict::new();
        $( d.insert(String::from($k), $crate::wamp::Value::from($v)); )+
        d
    }};
}

/// Native serialization: bytes stay bytes (CBOR, MsgPack).
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Dict(d) => {
                let mut map = s.serialize_map(Some(d.len()))?;
                for (k, v) in d {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// JSON view of a value: bytes become `"\0" + base64`.
pub struct JsonValue<'a>(pub &'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bytes(b) => {
                use base64::Engine;
                let mut out = String::with_capacity(1 + b.len() * 4 / 3 + 4);
                out.push('\0');
                base64::engine::general_purpose::STANDARD.encode_string(b, &mut out);
                s.serialize_str(&out)
            }
            Value::Float(f) if f.is_nan() || f.is_infinite() => s.serialize_unit(),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(&JsonValue(v))?;
                }
                seq.end()
            }
            Value::Dict(d) => {
                let mut map = s.serialize_map(Some(d.len()))?;
                for (k, v) in d {
                    map.serialize_entry(k, &JsonValue(v))?;
                }
                map.end()
            }
            other => other.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a WAMP value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        if let Ok(i) = i64::try_from(v) {
            Ok(Value::Int(i))
        } else if let Ok(u) = u64::try_from(v) {
            Ok(Value::UInt(u))
        } else {
            Err(E::custom("integer out of range"))
        }
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        u64::try_from(v)
            .map(Value::from)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Deserialize::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Dict::new();
        // WAMP dictionary keys are strings. Integer keys (CBOR and MsgPack allow them, and
        // Crossbar's edge sends them, e.g. in `get_worker(..., include_stats=True)`) become
        // their decimal text, as a JSON serializer writes them; other key types fail here.
        while let Some((MapKey(k), v)) = map.next_entry::<MapKey, Value>()? {
            out.insert(k, v);
        }
        Ok(Value::Dict(out))
    }
}

/// A dictionary key: a string, or an integer taken as its decimal text.
struct MapKey(String);

impl<'de> Deserialize<'de> for MapKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = MapKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or integer dictionary key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MapKey, E> {
                Ok(MapKey(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<MapKey, E> {
                Ok(MapKey(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MapKey, E> {
                Ok(MapKey(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MapKey, E> {
                Ok(MapKey(v.to_string()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

/// Turns JSON strings that follow the binary convention back into bytes.
pub(crate) fn decode_json_binary(v: &mut Value) -> Result<(), base64::DecodeError> {
    match v {
        Value::Str(s) if s.starts_with('\0') => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(&s.as_bytes()[1..])?;
            *v = Value::Bytes(bytes);
        }
        Value::List(l) => {
            for item in l {
                decode_json_binary(item)?;
            }
        }
        Value::Dict(d) => {
            for item in d.values_mut() {
                decode_json_binary(item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> Value {
        let mut v = Value::Int(1);
        for _ in 0..depth {
            v = Value::List(vec![Value::Null, v]);
        }
        v
    }

    #[test]
    fn nesting_is_measured_to_the_limit() {
        assert!(!Value::Int(1).nests_deeper_than(0));
        assert!(Value::List(vec![]).nests_deeper_than(0));
        assert!(!nested(100).nests_deeper_than(100));
        assert!(nested(101).nests_deeper_than(100));
        let mut d = Dict::new();
        d.insert("k".into(), nested(100));
        assert!(Value::Dict(d).nests_deeper_than(100));
    }

    #[test]
    fn integer_keys_become_their_text_and_others_are_refused() {
        // {1: "a", -2: "b", "k": "c"}, as the edge's worker stats send them.
        let cbor = [
            0xa3, 0x01, 0x61, b'a', 0x21, 0x61, b'b', 0x61, b'k', 0x61, b'c',
        ];
        let v: Value = ciborium::from_reader(&cbor[..]).expect("decodes");
        let Value::Dict(d) = v else {
            panic!("not a dict: {v:?}")
        };
        assert_eq!(d.get("1"), Some(&Value::Str("a".into())));
        assert_eq!(d.get("-2"), Some(&Value::Str("b".into())));
        assert_eq!(d.get("k"), Some(&Value::Str("c".into())));
        // A list as a key is still malformed.
        let bad = [0xa1, 0x80, 0x01];
        assert!(ciborium::from_reader::<Value, _>(&bad[..]).is_err());
    }
}
