//! The wire form of answers: stored records as WAMP values (without what the caller's realm
//! already implies), lists of oids or names, status transitions.

use serde::Serialize;

use super::{to_json, to_value};
use crate::router::internal::Invocation;
use crate::store::model::{Json, Record, UserRole};
use crate::wamp::Value;

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

/// `{session, authid, authrole}` of the caller, as start/stop results report it.
pub fn who(inv: &Invocation) -> Json {
    serde_json::json!({
        "session": inv.details.get("caller").map(to_json),
        "authid": inv.caller_authid(),
        "authrole": inv.caller_authrole(),
    })
}

/// The wire form of a stored object: the management realm is implicit in the realm the
/// caller is joined to, so its oid is not echoed (the reference kept one database per realm).
pub fn wire(mut json: Json) -> Value {
    if let Some(obj) = json.as_object_mut() {
        obj.remove("mrealm_oid");
    }
    to_value(json)
}

pub fn wire_record<R: Record>(r: &R) -> Value {
    wire(serde_json::to_value(r).unwrap_or(Json::Null))
}

/// Oids (in key order) or sorted names of `items` given as `(oid, name)`.
pub fn oids_or_names(items: Vec<(String, String)>, names: bool) -> Value {
    let mut out: Vec<String> = items
        .into_iter()
        .map(|(oid, name)| if names { name } else { oid })
        .collect();
    if names {
        out.sort();
    }
    Value::List(out.into_iter().map(Value::from).collect())
}

/// `{oid, status, changed}` of a status change, plus `who` for the caller's answer.
pub fn transition(json: &Json, inv: Option<&Invocation>) -> Json {
    let mut out = serde_json::Map::new();
    for k in ["oid", "status", "changed"] {
        out.insert(k.into(), json.get(k).cloned().unwrap_or(Json::Null));
    }
    if let Some(inv) = inv {
        out.insert("who".into(), who(inv));
    }
    Json::Object(out)
}

/// Role codes as their names (`owner`, …), unknown codes left out.
pub fn role_names(roles: &[u8]) -> Value {
    Value::List(
        roles
            .iter()
            .filter_map(|r| UserRole::from_code(*r))
            .map(UserRole::name)
            .map(Value::from)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_drops_the_mrealm() {
        let v = wire(serde_json::json!({"oid": "x", "mrealm_oid": "m", "name": "n"}));
        assert_eq!(to_json(&v), serde_json::json!({"oid": "x", "name": "n"}));
    }

    #[test]
    fn names_are_sorted_oids_keep_their_order() {
        let items = vec![("2".to_string(), "b".to_string()), ("1".into(), "a".into())];
        assert_eq!(
            to_json(&oids_or_names(items.clone(), true)),
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            to_json(&oids_or_names(items, false)),
            serde_json::json!(["2", "1"])
        );
    }

    #[test]
    fn transitions_carry_oid_status_changed() {
        let j = serde_json::json!({"oid": "o", "status": "STOPPED", "changed": 5, "name": "n"});
        assert_eq!(
            transition(&j, None),
            serde_json::json!({"oid": "o", "status": "STOPPED", "changed": 5})
        );
    }
}
