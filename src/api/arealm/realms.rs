//! Application realms: create, delete, start, stop, their statistics and router workers,
//! and the roles they use.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::api::args::*;
use crate::api::errors::*;
use crate::api::objects::*;
use crate::api::reply::*;
use crate::api::scope::Scope;
use crate::api::to_json;
use crate::clock::now_ns;
use crate::router::internal::{CallError, Invocation};
use crate::store::model::{
    ApplicationRealm, ArealmRoleAssociation, Extra, Json, Principal, RouterWorkerGroup,
    RouterWorkerGroupClusterPlacement, WebCluster,
};
use crate::store::{AnyRecord, Kind};
use crate::wamp::Value;
use crate::wamp::errors::*;

pub(super) async fn create_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let mut spec = dict_arg(&inv, 0, "arealm")?;
    let oid = Uuid::new_v4();
    let name = match spec.remove("name") {
        None | Some(Json::Null) => format!("arealm-{}", &oid.to_string()[..8]),
        Some(Json::String(n)) => n,
        Some(_) => return Err(bad_argument("name must be a string")),
    };
    if !valid_realm_name(&name) {
        return Err(bad_argument(format!(
            "{name:?} is not a valid realm name (^[A-Za-z][A-Za-z0-9_\\-@\\.]{{2,254}}$)"
        )));
    }
    let owner = caller_oid(&s, &inv).await?;
    let arealm: ApplicationRealm = build(
        spec,
        json!({
            "oid": oid,
            "mrealm_oid": s.mrealm_oid,
            "name": name,
            "status": "STOPPED",
            "workergroup_oid": null,
            "webcluster_oid": null,
            "changed": now_ns(),
            "owner_oid": owner,
        }),
        INVALID_ARGUMENT,
    )?;
    let created = insert(&s, AnyRecord::ApplicationRealm(arealm)).await?;
    publish(&s, "on_arealm_created", &created);
    Ok(created)
}

pub(super) async fn delete_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    // Principals, their credentials and role associations belong to the realm and go too.
    let deleted = delete(&s, Kind::ApplicationRealm, arealm_key(&s, &a), false).await?;
    publish(&s, "on_arealm_deleted", &deleted);
    Ok(deleted)
}

pub(super) async fn start_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let wg = oid_arg(&inv, 1, "router_workergroup_oid")?;
    let wc = opt_oid_arg(&inv, 2, "webcluster_oid")?;
    {
        let r = reader(&s).await?;
        get_arealm_in(&s, &r, &a)?;
        find::<RouterWorkerGroup>(&r, &s.key_prefix(), &wg)?
            .ok_or_else(|| no_such_object("router worker group", wg))?;
        if let Some(wc) = wc {
            get::<WebCluster>(&r, &s.key(wc), "web cluster", &wc.to_string())?;
        }
    }
    let mut delta = Extra::new();
    delta.insert("workergroup_oid".into(), json!(wg));
    delta.insert("webcluster_oid".into(), json!(wc));
    let started = set_status(
        &s,
        Kind::ApplicationRealm,
        &arealm_key(&s, &a),
        "STARTING",
        starting_from(),
        delta,
    )
    .await?;
    let mut out = transition(&started, Some(&inv));
    out["router_workergroup_oid"] = json!(wg);
    out["webcluster_oid"] = json!(wc);
    let out = crate::api::to_value(out);
    publish(&s, "on_arealm_starting", &out);
    Ok(out)
}

pub(super) async fn stop_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    // STOPPED (and `on_arealm_stopped`) follow once the router workers are gone.
    let stopping = stop(&s, Kind::ApplicationRealm, &arealm_key(&s, &a)).await?;
    let out = crate::api::to_value(transition(&stopping, Some(&inv)));
    publish(&s, "on_arealm_stopping", &out);
    Ok(out)
}

pub(super) async fn stat_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let r = reader(&s).await?;
    let arealm = get_arealm_in(&s, &r, &a)?;
    let inside = format!("{}/{a}/", s.mrealm_oid);
    let principals = r.list::<Principal>(&inside)?;
    let mut credentials = 0;
    for p in &principals {
        credentials += r
            .list_json(Kind::Credential, &format!("{}/{}/", s.mrealm_oid, p.oid))?
            .len();
    }
    let roles = r.list_json(Kind::ArealmRoleAssociation, &inside)?.len();
    let workers = router_workers(&s, &r, &arealm)?;
    let running = workers
        .iter()
        .filter(|w| w.get("state").and_then(Json::as_str) == Some("running"))
        .count();
    let mut out = serde_json::to_value(&arealm).unwrap_or(Json::Null);
    out["stats"] = json!({
        "principals": principals.len(),
        "credentials": credentials,
        "roles": roles,
        "router_workers": workers.len(),
        "router_workers_running": running,
    });
    out["router_workers"] = Json::Array(workers);
    Ok(wire(out))
}

pub(super) async fn list_router_workers(
    s: Arc<Scope>,
    inv: Invocation,
) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let r = reader(&s).await?;
    let arealm = get_arealm_in(&s, &r, &a)?;
    Ok(Value::List(
        router_workers(&s, &r, &arealm)?
            .into_iter()
            .map(crate::api::to_value)
            .collect(),
    ))
}

/// The placements of the realm's worker group, each with what the last orchestration pass
/// found on its node for this realm: `state` (running, failed, offline, stopped), the
/// realm's transport and `port` there, and the `error` of a failed step.
fn router_workers(
    s: &Scope,
    r: &crate::store::Reader,
    arealm: &ApplicationRealm,
) -> Result<Vec<Json>, CallError> {
    let Some(wg) = arealm.workergroup_oid else {
        return Ok(Vec::new());
    };
    let report = arealm.extra.get("orchestration");
    let placements =
        r.list::<RouterWorkerGroupClusterPlacement>(&format!("{}/{wg}/", s.mrealm_oid))?;
    Ok(placements
        .iter()
        .map(|p| {
            let mut out = crate::api::to_json(&wire_record(p));
            let found = report
                .and_then(|o| o.get("nodes"))
                .and_then(|n| n.get(p.node_oid.to_string()))
                .and_then(|n| n.get("workers"))
                .and_then(|w| w.get(&p.worker_name));
            let stopped = arealm.status == "STOPPED";
            out["state"] = match (found, stopped) {
                (_, true) => json!("stopped"),
                (Some(f), _) => f.get("state").cloned().unwrap_or(Json::Null),
                (None, _) => json!("pending"),
            };
            for k in ["transport", "port", "error"] {
                out[k] = if stopped {
                    Json::Null
                } else {
                    found.and_then(|f| f.get(k)).cloned().unwrap_or(Json::Null)
                };
            }
            out
        })
        .collect())
}

pub(super) async fn list_arealm_roles(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let names = flag_arg(&inv, 1, "return_names")?;
    let r = reader(&s).await?;
    get_arealm_in(&s, &r, &a)?;
    let mut items = Vec::new();
    for assoc in r.list::<ArealmRoleAssociation>(&format!("{}/{a}/", s.mrealm_oid))? {
        let name = if names {
            get_role_in(&s, &r, &assoc.role_oid)?.name
        } else {
            String::new()
        };
        items.push((assoc.role_oid.to_string(), name));
    }
    Ok(oids_or_names(items, names))
}

pub(super) async fn add_arealm_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let role = oid_arg(&inv, 1, "role_oid")?;
    let config = match inv.arg(2).or_else(|| inv.kwarg("config")) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Dict(_)) => Some(to_json(v)),
        Some(_) => return Err(bad_argument("config must be a dict")),
    };
    let assoc = ArealmRoleAssociation {
        mrealm_oid: s.mrealm_oid,
        arealm_oid: a,
        role_oid: role,
        config,
    };
    let added = insert(&s, AnyRecord::ArealmRoleAssociation(assoc)).await?;
    publish(&s, "on_arealm_role_added", &added);
    Ok(added)
}

pub(super) async fn remove_arealm_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let role = oid_arg(&inv, 1, "role_oid")?;
    let removed = delete(
        &s,
        Kind::ArealmRoleAssociation,
        association_key(&s, &a, &role),
        false,
    )
    .await?;
    publish(&s, "on_arealm_role_removed", &removed);
    Ok(removed)
}

pub(super) async fn get_arealm_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let role = oid_arg(&inv, 1, "role_oid")?;
    let r = reader(&s).await?;
    get_arealm_in(&s, &r, &a)?;
    let assoc: ArealmRoleAssociation = get(
        &r,
        &association_key(&s, &a, &role),
        "role association",
        &format!("{a}/{role}"),
    )?;
    Ok(wire_record(&assoc))
}
