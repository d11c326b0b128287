//! What the object APIs of a management realm (application realms, clusters, metadata)
//! share: caller checks, argument parsing, reads and writes answering with the spec's error
//! URIs (§9), status transitions, and the wire form of stored objects (§8).

use std::sync::Arc;

use uuid::Uuid;

use super::args::{flag_arg, oid_arg, str_arg};
use super::errors::{corrupt_record, no_such_object};
use super::reply::{oids_or_names, wire};
use super::route;
use super::scope::Scope;
use crate::clock::now_ns;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{Extra, Json, Node, Presence, Record};
use crate::store::{Command, Index, Kind, Reader, StatusRule};
use crate::wamp::Value;
use crate::wamp::errors::{DEPENDENT_OBJECTS, NOT_AUTHORIZED};

/// A named top-level object of a management realm (application realm, role, router or web
/// cluster) and the three reads every one of them has: list, get by oid, get by name.
pub struct Named {
    pub kind: Kind,
    pub by_name: Index,
    /// In messages: "application realm", "role", "router cluster".
    pub what: &'static str,
    /// The argument carrying its oid: `arealm_oid`, `role_oid`, `routercluster_oid`.
    pub oid_arg: &'static str,
    /// The argument carrying its name: `name`, `routercluster_name`.
    pub name_arg: &'static str,
}

impl Named {
    /// The object `oid` of this realm, as stored.
    pub fn in_realm(&self, s: &Scope, r: &Reader, oid: &Uuid) -> Result<Json, CallError> {
        r.get_json(self.kind, &s.key(oid))?
            .ok_or_else(|| no_such_object(self.what, oid))
    }

    /// `list_*s(return_names=False)`: oids in key order, or sorted names.
    pub async fn list(&self, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
        let names = flag_arg(&inv, 0, "return_names")?;
        let r = reader(&s).await?;
        let field = |j: &Json, k: &str| {
            j.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let items = r
            .list_json(self.kind, &s.key_prefix())?
            .into_iter()
            .map(|(_, j)| (field(&j, "oid"), field(&j, "name")))
            .collect();
        Ok(oids_or_names(items, names))
    }

    /// `get_*(oid)`.
    pub async fn get(&self, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
        let oid = oid_arg(&inv, 0, self.oid_arg)?;
        let r = reader(&s).await?;
        Ok(wire(self.in_realm(&s, &r, &oid)?))
    }

    /// `get_*_by_name(name)`.
    pub async fn get_by_name(&self, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
        let name = str_arg(&inv, 0, self.name_arg)?.to_owned();
        let r = reader(&s).await?;
        r.lookup_json(self.kind, self.by_name, &s.key(&name))?
            .map(wire)
            .ok_or_else(|| no_such_object(&format!("{} named", self.what), format!("{name:?}")))
    }

    /// `prefix` + `list_{plural}`, `get_{singular}` and `get_{singular}_by_name`.
    pub fn routes(
        &'static self,
        scope: &Arc<Scope>,
        prefix: &str,
        plural: &str,
        singular: &str,
    ) -> Vec<(String, Handler)> {
        vec![
            route(scope, prefix, &format!("list_{plural}"), move |s, i| {
                self.list(s, i)
            }),
            route(scope, prefix, &format!("get_{singular}"), move |s, i| {
                self.get(s, i)
            }),
            route(
                scope,
                prefix,
                &format!("get_{singular}_by_name"),
                move |s, i| self.get_by_name(s, i),
            ),
        ]
    }
}

/// States a start may leave from.
pub const STARTABLE: [&str; 2] = ["STOPPED", "PAUSED"];
/// States a stop may leave from. STOPPING is included: asking again while the reconciler
/// stops the workers is not an error.
pub const STOPPABLE: [&str; 6] = [
    "STARTING", "RUNNING", "PAUSED", "DEGRADED", "ERROR", "STOPPING",
];

pub async fn reader(s: &Scope) -> Result<Reader, CallError> {
    s.ctx.replica.read().await.map_err(CallError::from)
}

pub async fn propose(s: &Scope, cmd: Command) -> Result<Json, CallError> {
    s.ctx.replica.propose(cmd).await.map_err(CallError::from)
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

pub fn get<R: Record>(r: &Reader, key: &str, what: &str, id: &str) -> Result<R, CallError> {
    r.get::<R>(key)?.ok_or_else(|| no_such_object(what, id))
}

/// The object of `R` with this oid among those under `prefix`, for kinds whose key has a
/// parent oid in front of their own.
pub fn find<R: Record>(r: &Reader, prefix: &str, oid: &uuid::Uuid) -> Result<Option<R>, CallError> {
    let want = oid.to_string();
    let found = r
        .list_json(R::KIND, prefix)?
        .into_iter()
        .find(|(_, j)| j.get("oid").and_then(Json::as_str) == Some(want.as_str()));
    match found {
        Some((_, j)) => serde_json::from_value(j).map(Some).map_err(corrupt_record),
        None => Ok(None),
    }
}

/// A node paired to this management realm.
pub fn paired_node(s: &Scope, r: &Reader, oid: &uuid::Uuid) -> Result<Node, CallError> {
    match r.get::<Node>(&oid.to_string())? {
        Some(n) if n.mrealm_oid == Some(s.mrealm_oid) => Ok(n),
        _ => Err(no_such_object("node", oid)),
    }
}

/// Whether a node has a management session on some replica.
pub fn online(r: &Reader, node_oid: &uuid::Uuid) -> Result<bool, CallError> {
    Ok(r.get::<Presence>(&node_oid.to_string())?.is_some())
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
        let authid = match r.get::<Node>(&oid.to_string())? {
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
        .list_json(Kind::ApplicationRealm, &s.key_prefix())?
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

/// Asks for an object to stop: it moves to STOPPING, and the orchestration reconciler
/// (`api/orchestrate`, on the leader) moves it to STOPPED once its workers are gone from
/// the nodes.
pub async fn stop(s: &Scope, kind: Kind, key: &str) -> Result<Json, CallError> {
    set_status(s, kind, key, "STOPPING", stopping_from(), Extra::new()).await
}

/// `^[a-z][a-z0-9_]{2,63}$`: Crossbar's config item id pattern (`_CONFIG_ITEM_ID_PAT_STR`
/// in `crossbar/common/checkconfig.py`); cluster and worker group names become worker ids
/// on nodes.
pub fn valid_config_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && (3..=64).contains(&id.len())
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
        assert!(valid_config_id("cwg_1a2b3c4d5"));
        assert!(valid_config_id(&format!("a{}", "b".repeat(63))));
        assert!(!valid_config_id(&format!("a{}", "b".repeat(64))));
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
}
