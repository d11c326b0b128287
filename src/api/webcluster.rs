//! `crossbarfabriccenter.mrealm.webcluster.*` (spec §6.6): web clusters, their member nodes,
//! and the web services they serve by path. Events go to
//! `crossbarfabriccenter.mrealm.webcluster.on_*`.
//!
//! Starting a cluster moves it to STARTING; the orchestration reconciler (`api/orchestrate`)
//! starts its proxy workers on the member nodes and moves it to RUNNING (or DEGRADED).

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::args::*;
use super::clusters::{self, Family};
use super::errors::*;
use super::objects::*;
use super::reply::*;
use super::route;
use super::scope::Scope;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{Json, WebCluster, WebClusterNodeMembership, WebService};
use crate::store::{AnyRecord, Command, Index, Kind};
use crate::wamp::errors::INVALID_ARGUMENT;
use crate::wamp::errors::*;
use crate::wamp::{Dict, Value};

const PREFIX: &str = "crossbarfabriccenter.mrealm.webcluster.";

/// Web service types a Crossbar web transport serves.
const SERVICE_TYPES: [&str; 14] = [
    "path",
    "redirect",
    "reverseproxy",
    "nodeinfo",
    "json",
    "cgi",
    "wsgi",
    "static",
    "websocket",
    "websocket-reverseproxy",
    "caller",
    "publisher",
    "archive",
    "wap",
];

/// Web clusters as a cluster [`Family`]: members run `parallel` proxy workers, and
/// application realms use the cluster itself.
pub static FAMILY: Family = Family {
    prefix: PREFIX,
    name: "webcluster",
    named: Named {
        kind: Kind::WebCluster,
        by_name: Index::WebClusterByName,
        what: "web cluster",
        oid_arg: "webcluster_oid",
        name_arg: "webcluster_name",
    },
    member_kind: Kind::WebClusterNodeMembership,
    new_cluster: |spec, fixed| {
        build::<WebCluster>(spec, fixed, INVALID_CONFIGURATION).map(AnyRecord::WebCluster)
    },
    new_member: |config, fixed| {
        let m: WebClusterNodeMembership = build(config, fixed, INVALID_ARGUMENT)?;
        if m.parallel.is_some_and(|p| p < 1) {
            return Err(bad_argument("parallel must be at least 1"));
        }
        Ok(AnyRecord::WebClusterNodeMembership(m))
    },
    used_by_arealms: |_, _, c| Ok(("webcluster_oid", vec![c.to_string()])),
};

pub fn handlers(scope: &Arc<Scope>) -> Vec<(String, Handler)> {
    let s = scope;
    let mut all = clusters::handlers(s, &FAMILY);
    all.extend([
        route(s, PREFIX, "stat_webcluster", stat_cluster),
        route(s, PREFIX, "list_webcluster_services", list_services),
        route(s, PREFIX, "add_webcluster_service", add_service),
        route(s, PREFIX, "remove_webcluster_service", remove_service),
        route(s, PREFIX, "get_webcluster_service", get_service),
        route(
            s,
            PREFIX,
            "get_webcluster_service_by_path",
            get_service_by_path,
        ),
    ]);
    all
}

fn publish(s: &Scope, topic: &str, v: &Value) {
    s.events
        .publish(&format!("{PREFIX}{topic}"), vec![v.clone()]);
}

fn inner_key(s: &Scope, c: &Uuid, x: &Uuid) -> String {
    format!("{}/{c}/{x}", s.mrealm_oid)
}

// ---- clusters ----------------------------------------------------------------------------

/// `stat_webcluster(webcluster_oid)` (not in the reference): the cluster, counts, and one row
/// per proxy worker it should run (node, worker id, port, and what the last orchestration
/// pass found there).
async fn stat_cluster(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let r = reader(&s).await?;
    let mut out = FAMILY.cluster_in(&s, &r, &c)?;
    let cluster: WebCluster = serde_json::from_value(out.clone()).map_err(corrupt_record)?;
    let inside = format!("{}/{c}/", s.mrealm_oid);
    let members = r.list::<WebClusterNodeMembership>(&inside)?;
    let report = cluster.orchestration.as_ref().and_then(|o| o.get("nodes"));
    let port = cluster
        .tcp_port
        .clone()
        .unwrap_or(json!(crate::api::orchestrate::DEFAULT_WEB_PORT));
    let (mut workers, mut running, mut online_nodes) = (Vec::new(), 0, 0);
    for m in &members {
        let on = online(&r, &m.node_oid)?;
        online_nodes += usize::from(on);
        if m.standby == Some(true) {
            continue;
        }
        let found = report.and_then(|n| n.get(m.node_oid.to_string()));
        for id in crate::api::orchestrate::plan::proxy_worker_ids(&c, m.parallel.unwrap_or(1)) {
            let w = found
                .and_then(|n| n.get("workers"))
                .and_then(|w| w.get(&id));
            let state = match (cluster.status.as_str(), w) {
                ("STOPPED", _) => json!("stopped"),
                (_, Some(w)) => w.get("state").cloned().unwrap_or(Json::Null),
                (_, None) if !on => json!("offline"),
                (_, None) => json!("pending"),
            };
            running += usize::from(state == json!("running"));
            workers.push(json!({
                "node_oid": m.node_oid,
                "worker": id,
                "port": port,
                "state": state,
                "error": w.and_then(|w| w.get("error")).cloned().unwrap_or(Json::Null),
            }));
        }
    }
    out["stats"] = json!({
        "nodes": members.len(),
        "nodes_online": online_nodes,
        "services": r.list_json(Kind::WebService, &inside)?.len(),
        "proxy_workers": workers.len(),
        "proxy_workers_running": running,
    });
    out["proxy_workers"] = Json::Array(workers);
    Ok(wire(out))
}

// ---- member nodes ------------------------------------------------------------------------

// ---- services ----------------------------------------------------------------------------

async fn list_services(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let prefix = opt_str_arg(&inv, 1, "prefix")?;
    let r = reader(&s).await?;
    FAMILY.cluster_in(&s, &r, &c)?;
    let mut out = Dict::new();
    for ws in r.list::<WebService>(&format!("{}/{c}/", s.mrealm_oid))? {
        if prefix.as_deref().is_none_or(|p| ws.path.starts_with(p)) {
            out.insert(ws.path, Value::from(ws.oid.to_string()));
        }
    }
    Ok(Value::Dict(out))
}

fn check_service(spec: &crate::store::model::Extra) -> Result<(), CallError> {
    match spec.get("type").and_then(Json::as_str) {
        Some(t) if SERVICE_TYPES.contains(&t) => Ok(()),
        other => Err(bad_argument(format!(
            "web service type must be one of {SERVICE_TYPES:?}, not {other:?}"
        ))),
    }
}

async fn add_service(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let path = str_arg(&inv, 1, "path")?.to_owned();
    let spec = dict_arg(&inv, 2, "webservice")?;
    check_service(&spec)?;
    {
        let r = reader(&s).await?;
        let cluster: WebCluster =
            serde_json::from_value(FAMILY.cluster_in(&s, &r, &c)?).map_err(corrupt_record)?;
        // Running proxies are configured once, when the cluster starts.
        if !["STOPPED", "PAUSED"].contains(&cluster.status.as_str()) {
            return Err(CallError::new(
                NOT_STOPPED,
                format!(
                    "web cluster {} is {}; services are added while it is stopped or paused",
                    cluster.name, cluster.status
                ),
            ));
        }
    }
    let service: WebService = build(
        spec,
        json!({
            "oid": Uuid::new_v4(),
            "mrealm_oid": s.mrealm_oid,
            "webcluster_oid": c,
            "path": path,
        }),
        INVALID_ARGUMENT,
    )?;
    let added = wire(
        propose(
            &s,
            Command::Insert {
                record: AnyRecord::WebService(service),
            },
        )
        .await?,
    );
    publish(&s, "on_webservice_added", &added);
    Ok(added)
}

async fn remove_service(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let ws = oid_arg(&inv, 1, "webservice_oid")?;
    let removed = wire(
        propose(
            &s,
            Command::Delete {
                kind: Kind::WebService,
                key: inner_key(&s, &c, &ws),
                cascade: false,
            },
        )
        .await?,
    );
    publish(&s, "on_webservice_removed", &removed);
    Ok(removed)
}

async fn get_service(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let ws = oid_arg(&inv, 1, "webservice_oid")?;
    let r = reader(&s).await?;
    FAMILY.cluster_in(&s, &r, &c)?;
    let service: WebService = get(&r, &inner_key(&s, &c, &ws), "web service", &ws.to_string())?;
    Ok(wire_record(&service))
}

async fn get_service_by_path(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let path = str_arg(&inv, 1, "path")?.to_owned();
    let r = reader(&s).await?;
    FAMILY.cluster_in(&s, &r, &c)?;
    r.lookup::<WebService>(
        Index::WebServiceByPath,
        &format!("{}/{c}/{path}", s.mrealm_oid),
    )?
    .map(|w| wire_record(&w))
    .ok_or_else(|| no_such_object("web service at path", format!("{path:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_types_are_checked() {
        let ok: crate::store::model::Extra =
            serde_json::from_value(json!({"type": "nodeinfo"})).unwrap_or_default();
        assert!(check_service(&ok).is_ok());
        let bad: crate::store::model::Extra =
            serde_json::from_value(json!({"type": "ftp"})).unwrap_or_default();
        assert_eq!(
            check_service(&bad).map_err(|e| e.uri),
            Err(INVALID_ARGUMENT.to_string())
        );
        assert!(check_service(&Default::default()).is_err());
    }
}
