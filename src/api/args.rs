//! Arguments of management calls: positional `i` or keyword `name`, with one rule each for
//! what is required, optional (absent or null) and of the wrong type (always
//! `wamp.error.invalid_argument`, never silently a default).

use super::errors::bad_argument;
use super::to_json;
use crate::router::internal::Invocation;
use crate::store::model::{Extra, Json, UserRole};
use crate::wamp::{CallError, Value};

/// A UUID argument, or `wamp.error.invalid_argument`.
pub fn oid_arg(inv: &Invocation, i: usize, name: &str) -> Result<uuid::Uuid, CallError> {
    let s = inv
        .arg(i)
        .or_else(|| inv.kwarg(name))
        .and_then(Value::as_str)
        .ok_or_else(|| bad_argument(format!("{name} (an oid string) is required")))?;
    uuid::Uuid::parse_str(s).map_err(|e| bad_argument(format!("{name} {s:?} is not a UUID: {e}")))
}

pub fn str_arg<'a>(inv: &'a Invocation, i: usize, name: &str) -> Result<&'a str, CallError> {
    inv.arg(i)
        .or_else(|| inv.kwarg(name))
        .and_then(Value::as_str)
        .ok_or_else(|| bad_argument(format!("{name} (a string) is required")))
}

/// A `return_names`-style flag: absent or null is false.
pub fn flag_arg(inv: &Invocation, i: usize, name: &str) -> Result<bool, CallError> {
    match inv.arg(i).or_else(|| inv.kwarg(name)) {
        None | Some(Value::Null) => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad_argument(format!("{name} must be a boolean"))),
    }
}

/// An optional string argument: absent or null is `None`.
pub fn opt_str_arg(inv: &Invocation, i: usize, name: &str) -> Result<Option<String>, CallError> {
    match inv.arg(i).or_else(|| inv.kwarg(name)) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| bad_argument(format!("{name} must be a string"))),
    }
}

/// An optional oid argument: absent or null is `None`.
pub fn opt_oid_arg(
    inv: &Invocation,
    i: usize,
    name: &str,
) -> Result<Option<uuid::Uuid>, CallError> {
    match opt_str_arg(inv, i, name)? {
        None => Ok(None),
        Some(s) => uuid::Uuid::parse_str(&s)
            .map(Some)
            .map_err(|e| bad_argument(format!("{name} {s:?} is not a UUID: {e}"))),
    }
}

/// A dict argument, as JSON.
pub fn dict_arg(inv: &Invocation, i: usize, name: &str) -> Result<Extra, CallError> {
    match inv.arg(i).or_else(|| inv.kwarg(name)) {
        Some(v @ Value::Dict(_)) => match to_json(v) {
            Json::Object(map) => Ok(map),
            _ => Err(bad_argument(format!("{name} must be a dict"))),
        },
        _ => Err(bad_argument(format!("{name} (a dict) is required"))),
    }
}

/// An optional dict argument: absent or null is empty.
pub fn opt_dict_arg(inv: &Invocation, i: usize, name: &str) -> Result<Extra, CallError> {
    match inv.arg(i).or_else(|| inv.kwarg(name)) {
        None | Some(Value::Null) => Ok(Extra::new()),
        Some(_) => dict_arg(inv, i, name),
    }
}

/// A modification delta that only touches `allowed` fields. The store checks the types.
pub fn delta_arg(
    inv: &Invocation,
    i: usize,
    name: &str,
    allowed: &[&str],
) -> Result<Extra, CallError> {
    let delta = dict_arg(inv, i, name)?;
    if let Some(key) = delta.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad_argument(format!(
            "{key:?} cannot be modified (modifiable: {})",
            allowed.join(", ")
        )));
    }
    Ok(delta)
}

/// A list of roles, as names (`owner`, `admin`, `user`, `guest`) or as their `UserRole`
/// numbers 1..4; `null` means none. Sorted and without duplicates.
pub fn roles_arg(inv: &Invocation, i: usize, name: &str) -> Result<Vec<u8>, CallError> {
    let items: &[Value] = match inv.arg(i).or_else(|| inv.kwarg(name)) {
        None | Some(Value::Null) => &[],
        Some(Value::List(l)) => l,
        Some(_) => return Err(bad_argument(format!("{name} must be a list of roles"))),
    };
    let mut roles = Vec::with_capacity(items.len());
    for item in items {
        let code = match item {
            Value::Str(s) => UserRole::from_name(s).map(UserRole::code),
            Value::Int(n) => u8::try_from(*n)
                .ok()
                .filter(|c| UserRole::from_code(*c).is_some()),
            Value::UInt(n) => u8::try_from(*n)
                .ok()
                .filter(|c| UserRole::from_code(*c).is_some()),
            _ => None,
        };
        roles.push(code.ok_or_else(|| {
            bad_argument(format!(
                "{item:?} is not a role (owner, admin, user, guest or 1..4)"
            ))
        })?);
    }
    roles.sort_unstable();
    roles.dedup();
    Ok(roles)
}

/// `filter_by_status` of node listings: "online", "offline" or none.
pub fn node_status_filter(inv: &Invocation, i: usize) -> Result<Option<bool>, CallError> {
    match opt_str_arg(inv, i, "filter_by_status")?.as_deref() {
        None => Ok(None),
        Some("online") => Ok(Some(true)),
        Some("offline") => Ok(Some(false)),
        Some(other) => Err(bad_argument(format!(
            "filter_by_status must be \"online\" or \"offline\", not {other:?}"
        ))),
    }
}
