//! What the object APIs of a management realm (application realms, clusters, metadata)
//! share: caller checks, argument parsing, reads and writes answering with the spec's error
//! URIs (§9), status transitions, and the wire form of stored objects (§8).

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::scope::Scope;
use super::{bad_argument, handler, propose_failed, read_failed, to_json, to_value};
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{Extra, Json, Node, Presence, Record};
use crate::store::{Command, Kind, Reader, StatusRule, StoreError};
use crate::wamp::Value;
use crate::wamp::errors::{NOT_AUTHORIZED, RUNTIME_ERROR};

pub const NO_SUCH_OBJECT: &str = "crossbar.error.no_such_object";
pub const INVALID_CONFIG: &str = "crossbar.error.invalid_config";
pub const INVALID_CONFIGURATION: &str = "wamp.error.invalid_configuration";
pub const NOT_STOPPED: &str = "crossbar.error.not_stopped";
pub const DEPENDENT_OBJECTS: &str = "crossbar.error.dependent_objects";

/// States a start may leave from.
pub const STARTABLE: [&str; 2] = ["STOPPED", "PAUSED"];
/// States a stop may leave from. STOPPING is included so an object left there by a failure
/// between the two steps of a stop can still be stopped.
pub const STOPPABLE: [&str; 6] = [
    "STARTING", "RUNNING", "PAUSED", "DEGRADED", "ERROR", "STOPPING",
];

/// One procedure `prefix + name`, called with the scope it serves.
pub fn route<F, Fut>(scope: &Arc<Scope>, prefix: &str, name: &str, f: F) -> (String, Handler)
where
    F: Fn(Arc<Scope>, Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, CallError>> + Send + 'static,
{
    let scope = scope.clone();
    (
        format!("{prefix}{name}"),
        handler(move |inv| f(scope.clone(), inv)),
    )
}

pub fn runtime(e: StoreError) -> CallError {
    CallError::new(RUNTIME_ERROR, e.to_string())
}

pub fn no_such(what: &str, id: impl std::fmt::Display) -> CallError {
    CallError::new(NO_SUCH_OBJECT, format!("no {what} {id}"))
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub async fn reader(s: &Scope) -> Result<Reader, CallError> {
    s.ctx.replica.read().await.map_err(read_failed)
}

pub async fn propose(s: &Scope, cmd: Command) -> Result<Json, CallError> {
    s.ctx.replica.propose(cmd).await.map_err(propose_failed)
}

/// Changes are for the realm's owners and admins; everyone on the realm may read.
pub fn require_writer(inv: &Invocation) -> Result<(), CallError> {
    match inv.caller_authrole() {
        Some("owner" | "admin") => Ok(()),
        other => Err(CallError::new(
            NOT_AUTHORIZED,
            format!("role {other:?} may not change objects of this management realm"),
        )),
    }
}

/// Some changes (deleting or starting a router cluster) are for owners only.
pub fn require_owner(inv: &Invocation) -> Result<(), CallError> {
    match inv.caller_authrole() {
        Some("owner") => Ok(()),
        other => Err(CallError::new(
            NOT_AUTHORIZED,
            format!("role {other:?} is not an owner of this management realm"),
        )),
    }
}

/// The oid of the calling user, if the caller is one.
pub async fn caller_oid(s: &Scope, inv: &Invocation) -> Result<Option<Json>, CallError> {
    Ok(s.caller_user(inv)
        .await?
        .map(|u| Json::String(u.oid.to_string())))
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

/// Builds a record from caller input plus the fields the master decides, which override
/// anything the caller sent under the same names.
pub fn build<R: Record>(
    mut input: Extra,
    fixed: serde_json::Value,
    uri: &str,
) -> Result<R, CallError> {
    if let Json::Object(fixed) = fixed {
        input.extend(fixed);
    }
    serde_json::from_value(Json::Object(input))
        .map_err(|e| CallError::new(uri, format!("invalid {}: {e}", R::KIND)))
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

pub fn get<R: Record>(r: &Reader, key: &str, what: &str, id: &str) -> Result<R, CallError> {
    r.get::<R>(key)
        .map_err(runtime)?
        .ok_or_else(|| no_such(what, id))
}

/// The object of `R` with this oid among those under `prefix`, for kinds whose key has a
/// parent oid in front of their own.
pub fn find<R: Record>(r: &Reader, prefix: &str, oid: &uuid::Uuid) -> Result<Option<R>, CallError> {
    let want = oid.to_string();
    let found = r
        .list_json(R::KIND, prefix)
        .map_err(runtime)?
        .into_iter()
        .find(|(_, j)| j.get("oid").and_then(Json::as_str) == Some(want.as_str()));
    match found {
        Some((_, j)) => serde_json::from_value(j)
            .map(Some)
            .map_err(|e| CallError::new(RUNTIME_ERROR, e.to_string())),
        None => Ok(None),
    }
}

/// A node paired to this management realm.
pub fn paired_node(s: &Scope, r: &Reader, oid: &uuid::Uuid) -> Result<Node, CallError> {
    match r.get::<Node>(&oid.to_string()).map_err(runtime)? {
        Some(n) if n.mrealm_oid == Some(s.mrealm_oid) => Ok(n),
        _ => Err(no_such("node", oid)),
    }
}

/// Whether a node has a management session on some replica.
pub fn online(r: &Reader, node_oid: &uuid::Uuid) -> Result<bool, CallError> {
    Ok(r.get::<Presence>(&node_oid.to_string())
        .map_err(runtime)?
        .is_some())
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

/// Member nodes of a cluster as oids or (sorted) authids, optionally only those online or
/// offline.
pub fn member_nodes(
    s: &Scope,
    r: &Reader,
    nodes: Vec<uuid::Uuid>,
    names: bool,
    online_filter: Option<bool>,
) -> Result<Value, CallError> {
    let mut items = Vec::new();
    for oid in nodes {
        if let Some(want) = online_filter
            && online(r, &oid)? != want
        {
            continue;
        }
        let authid = match r.get::<Node>(&oid.to_string()).map_err(runtime)? {
            Some(n) if n.mrealm_oid == Some(s.mrealm_oid) => n.authid.unwrap_or_default(),
            _ => String::new(),
        };
        items.push((oid.to_string(), authid));
    }
    Ok(oids_or_names(items, names))
}

/// Refuses to remove what a running (or starting, stopping…) application realm uses:
/// `field` is `workergroup_oid` or `webcluster_oid`.
pub fn check_unused(s: &Scope, r: &Reader, field: &str, oids: &[String]) -> Result<(), CallError> {
    let users: Vec<String> = r
        .list_json(Kind::ApplicationRealm, &s.key_prefix())
        .map_err(runtime)?
        .into_iter()
        .filter(|(_, a)| {
            a.get("status").and_then(Json::as_str) != Some("STOPPED")
                && a.get(field)
                    .and_then(Json::as_str)
                    .is_some_and(|o| oids.iter().any(|x| x == o))
        })
        .filter_map(|(_, a)| a.get("name").and_then(Json::as_str).map(str::to_owned))
        .collect();
    if users.is_empty() {
        Ok(())
    } else {
        Err(CallError::new(
            DEPENDENT_OBJECTS,
            format!("in use by application realm(s) not stopped: {users:?}"),
        ))
    }
}

/// Moves an object to `status` if its current one satisfies `rule`.
pub async fn set_status(
    s: &Scope,
    kind: Kind,
    key: &str,
    status: &str,
    rule: StatusRule,
    mut delta: Extra,
) -> Result<Json, CallError> {
    delta.insert("status".into(), Json::from(status));
    delta.insert("changed".into(), Json::from(now_ns()));
    propose(
        s,
        Command::Modify {
            kind,
            key: key.to_owned(),
            delta,
            status_rule: Some(rule),
        },
    )
    .await
}

pub fn starting_from() -> StatusRule {
    StatusRule::StartFrom(STARTABLE.iter().map(|s| s.to_string()).collect())
}

pub fn stopping_from() -> StatusRule {
    StatusRule::StopFrom(STOPPABLE.iter().map(|s| s.to_string()).collect())
}

/// Stops an object in two replicated steps, STOPPING then STOPPED, returning both states.
///
/// The reference left objects in STOPPING for its orchestration monitors to finish; those
/// monitors (which tear down workers on nodes) are not part of this module, and nothing
/// else would ever complete the stop, so the object is stopped at once and can be deleted.
pub async fn stop(s: &Scope, kind: Kind, key: &str) -> Result<(Json, Json), CallError> {
    let stopping = set_status(s, kind, key, "STOPPING", stopping_from(), Extra::new()).await?;
    let stopped = set_status(
        s,
        kind,
        key,
        "STOPPED",
        StatusRule::StopFrom(vec!["STOPPING".into()]),
        Extra::new(),
    )
    .await?;
    Ok((stopping, stopped))
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

/// `^[a-z][a-z0-9_]{2,11}$`: the Crossbar config item id pattern (cluster and worker
/// group names become worker ids on nodes).
pub fn valid_config_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && (3..=12).contains(&id.len())
}

/// `^[A-Za-z][A-Za-z0-9_\-@\.]{2,254}$`: the Crossbar realm name pattern.
pub fn valid_realm_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-@.".contains(c))
        && (3..=255).contains(&name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_ids() {
        assert!(valid_config_id("cluster1"));
        assert!(valid_config_id("cwg_1a2b3c4d"));
        assert!(!valid_config_id("cwg_1a2b3c4d5"));
        assert!(!valid_config_id("ab"));
        assert!(!valid_config_id("1abc"));
        assert!(!valid_config_id("Cluster"));
        assert!(!valid_config_id("a-b-c"));
    }

    #[test]
    fn realm_names() {
        assert!(valid_realm_name("realm1"));
        assert!(valid_realm_name("com.example-app@x"));
        assert!(!valid_realm_name("r1"));
        assert!(!valid_realm_name("1realm"));
        assert!(!valid_realm_name("has space"));
    }

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
