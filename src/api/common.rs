//! Argument parsing and results shared by the global realm's user and mrealm procedures.

use std::sync::Arc;

use serde::Serialize;

use super::{Ctx, Publisher, bad_argument, handler, to_json, to_value};
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::StoreError;
use crate::store::model::{Extra, ROLE_ADMIN, ROLE_GUEST, ROLE_OWNER, ROLE_USER};
use crate::wamp::Value;

pub const NO_SUCH_OBJECT: &str = "crossbar.error.no_such_object";
pub const DEPENDENT_OBJECTS: &str = "crossbar.error.dependent_objects";
pub const NOT_AUTHORIZED: &str = "fabric.not-authorized";

/// A storage failure while reading: the disk, never the caller's input.
pub fn store_failed(e: StoreError) -> CallError {
    CallError::new(crate::wamp::errors::RUNTIME_ERROR, e.to_string())
}

pub fn no_such(what: impl std::fmt::Display) -> CallError {
    CallError::new(NO_SUCH_OBJECT, format!("no {what}"))
}

/// A stored record in its wire form.
pub fn record_value<T: Serialize>(record: &T) -> Value {
    to_value(serde_json::to_value(record).expect("records serialize"))
}

/// Oids or names, sorted, as a WAMP list.
pub fn sorted_list(mut items: Vec<String>) -> Value {
    items.sort();
    items.dedup();
    Value::List(items.into_iter().map(Value::from).collect())
}

/// A dict argument (positional `i` or keyword `name`) as JSON.
pub fn dict_arg(inv: &Invocation, i: usize, name: &str) -> Result<Extra, CallError> {
    match inv.arg(i).or_else(|| inv.kwarg(name)) {
        Some(v @ Value::Dict(_)) => match to_json(v) {
            serde_json::Value::Object(map) => Ok(map),
            _ => Err(bad_argument(format!("{name} must be a dict"))),
        },
        _ => Err(bad_argument(format!("{name} (a dict) is required"))),
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

/// An optional boolean argument (positional `i` or keyword `name`), `false` when absent.
pub fn flag_arg(inv: &Invocation, i: usize, name: &str) -> bool {
    inv.arg(i)
        .or_else(|| inv.kwarg(name))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub fn role_code(name: &str) -> Option<u8> {
    match name {
        "owner" => Some(ROLE_OWNER),
        "admin" => Some(ROLE_ADMIN),
        "user" => Some(ROLE_USER),
        "guest" => Some(ROLE_GUEST),
        _ => None,
    }
}

pub fn role_name(code: u8) -> Option<&'static str> {
    match code {
        ROLE_OWNER => Some("owner"),
        ROLE_ADMIN => Some("admin"),
        ROLE_USER => Some("user"),
        ROLE_GUEST => Some("guest"),
        _ => None,
    }
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
            Value::Str(s) => role_code(s),
            Value::Int(n) => u8::try_from(*n).ok().filter(|c| role_name(*c).is_some()),
            Value::UInt(n) => u8::try_from(*n).ok().filter(|c| role_name(*c).is_some()),
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

pub fn role_names(roles: &[u8]) -> Value {
    Value::List(
        roles
            .iter()
            .filter_map(|r| role_name(*r))
            .map(Value::from)
            .collect(),
    )
}

/// A handler from an `async fn(ctx, publisher, invocation)`.
pub fn backend<F, Fut>(ctx: &Arc<Ctx>, publisher: &Publisher, f: F) -> Handler
where
    F: Fn(Arc<Ctx>, Publisher, Invocation) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, CallError>> + Send + 'static,
{
    let (ctx, publisher) = (ctx.clone(), publisher.clone());
    handler(move |inv| f(ctx.clone(), publisher.clone(), inv))
}
