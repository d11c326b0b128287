//! `crossbarfabriccenter.mrealm.webcluster.*` (spec §6.6): web clusters, their member nodes,
//! and the web services they serve by path. Events go to
//! `crossbarfabriccenter.mrealm.webcluster.on_*`.
//!
//! Starting a cluster moves it to STARTING; starting its proxy workers on the nodes and
//! moving it on to RUNNING is the job of an orchestration monitor, which is not part of this
//! module.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::args::*;
use super::errors::*;
use super::objects::*;
use super::reply::*;
use super::route;
use super::scope::Scope;
use super::to_value;
use crate::clock::now_ns;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{Json, WebCluster, WebClusterNodeMembership, WebService};
use crate::store::{AnyRecord, Command, Index, Kind, Reader};
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

pub fn handlers(scope: &Arc<Scope>) -> Vec<(String, Handler)> {
    let s = scope;
    vec![
        route(s, PREFIX, "list_webclusters", list_clusters),
        route(s, PREFIX, "get_webcluster", get_cluster),
        route(s, PREFIX, "get_webcluster_by_name", get_cluster_by_name),
        route(s, PREFIX, "create_webcluster", create_cluster),
        route(s, PREFIX, "delete_webcluster", delete_cluster),
        route(s, PREFIX, "start_webcluster", start_cluster),
        route(s, PREFIX, "stop_webcluster", stop_cluster),
        route(s, PREFIX, "list_webcluster_nodes", list_nodes),
        route(s, PREFIX, "add_webcluster_node", add_node),
        route(s, PREFIX, "remove_webcluster_node", remove_node),
        route(s, PREFIX, "get_webcluster_node", get_node),
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
    ]
}

fn publish(s: &Scope, topic: &str, v: &Value) {
    s.events
        .publish(&format!("{PREFIX}{topic}"), vec![v.clone()]);
}

fn inner_key(s: &Scope, c: &Uuid, x: &Uuid) -> String {
    format!("{}/{c}/{x}", s.mrealm_oid)
}

fn cluster_in(s: &Scope, r: &Reader, c: &Uuid) -> Result<WebCluster, CallError> {
    get(r, &s.key(c), "web cluster", &c.to_string())
}

// ---- clusters ----------------------------------------------------------------------------

async fn list_clusters(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let names = flag_arg(&inv, 0, "return_names")?;
    let r = reader(&s).await?;
    let items = r
        .list::<WebCluster>(&s.key_prefix())?
        .into_iter()
        .map(|c| (c.oid.to_string(), c.name))
        .collect();
    Ok(oids_or_names(items, names))
}

async fn get_cluster(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let r = reader(&s).await?;
    Ok(wire_record(&cluster_in(&s, &r, &c)?))
}

async fn get_cluster_by_name(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let name = str_arg(&inv, 0, "webcluster_name")?.to_owned();
    let r = reader(&s).await?;
    r.lookup::<WebCluster>(Index::WebClusterByName, &s.key(&name))?
        .map(|c| wire_record(&c))
        .ok_or_else(|| no_such_object("web cluster named", format!("{name:?}")))
}

async fn create_cluster(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let spec = dict_arg(&inv, 0, "webcluster")?;
    match spec.get("name").and_then(Json::as_str) {
        Some(n) if valid_config_id(n) => {}
        other => {
            return Err(CallError::new(
                INVALID_CONFIGURATION,
                format!("web cluster name {other:?} does not match ^[a-z][a-z0-9_]{{2,11}}$"),
            ));
        }
    }
    let owner = caller_oid(&s, &inv).await?;
    let cluster: WebCluster = build(
        spec,
        json!({
            "oid": Uuid::new_v4(),
            "mrealm_oid": s.mrealm_oid,
            "status": "STOPPED",
            "owner_oid": owner,
            "changed": now_ns(),
        }),
        INVALID_CONFIGURATION,
    )?;
    let created = wire(
        propose(
            &s,
            Command::Insert {
                record: AnyRecord::WebCluster(cluster),
            },
        )
        .await?,
    );
    publish(&s, "on_webcluster_created", &created);
    Ok(created)
}

async fn delete_cluster(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    {
        let r = reader(&s).await?;
        cluster_in(&s, &r, &c)?;
        check_unused(&s, &r, "webcluster_oid", &[c.to_string()])?;
    }
    // Memberships and services go with the cluster.
    let deleted = wire(
        propose(
            &s,
            Command::Delete {
                kind: Kind::WebCluster,
                key: s.key(c),
                cascade: false,
            },
        )
        .await?,
    );
    publish(&s, "on_webcluster_deleted", &deleted);
    Ok(deleted)
}

async fn start_cluster(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let started = set_status(
        &s,
        Kind::WebCluster,
        &s.key(c),
        "STARTING",
        starting_from(),
        Default::default(),
    )
    .await?;
    let out = to_value(transition(&started, Some(&inv)));
    publish(&s, "on_webcluster_starting", &out);
    Ok(out)
}

async fn stop_cluster(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let (stopping, stopped) = stop(&s, Kind::WebCluster, &s.key(c)).await?;
    publish(
        &s,
        "on_webcluster_stopping",
        &to_value(transition(&stopping, Some(&inv))),
    );
    publish(
        &s,
        "on_webcluster_stopped",
        &to_value(transition(&stopped, None)),
    );
    Ok(to_value(transition(&stopped, Some(&inv))))
}

// ---- member nodes ------------------------------------------------------------------------

async fn list_nodes(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let names = flag_arg(&inv, 1, "return_names")?;
    let filter = node_status_filter(&inv, 2)?;
    let r = reader(&s).await?;
    cluster_in(&s, &r, &c)?;
    let nodes = r
        .list::<WebClusterNodeMembership>(&format!("{}/{c}/", s.mrealm_oid))?
        .into_iter()
        .map(|m| m.node_oid)
        .collect();
    member_nodes(&s, &r, nodes, names, filter)
}

async fn add_node(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let n = oid_arg(&inv, 1, "node_oid")?;
    let config = opt_dict_arg(&inv, 2, "config")?;
    {
        let r = reader(&s).await?;
        cluster_in(&s, &r, &c)?;
        paired_node(&s, &r, &n)?;
    }
    let membership: WebClusterNodeMembership = build(
        config,
        json!({"mrealm_oid": s.mrealm_oid, "cluster_oid": c, "node_oid": n}),
        INVALID_ARGUMENT,
    )?;
    if membership.parallel.is_some_and(|p| p < 1) {
        return Err(bad_argument("parallel must be at least 1"));
    }
    let added = wire(
        propose(
            &s,
            Command::Insert {
                record: AnyRecord::WebClusterNodeMembership(membership),
            },
        )
        .await?,
    );
    publish(&s, "on_webcluster_node_added", &added);
    Ok(added)
}

async fn remove_node(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let n = oid_arg(&inv, 1, "node_oid")?;
    let removed = wire(
        propose(
            &s,
            Command::Delete {
                kind: Kind::WebClusterNodeMembership,
                key: inner_key(&s, &c, &n),
                cascade: false,
            },
        )
        .await?,
    );
    publish(&s, "on_webcluster_node_removed", &removed);
    Ok(removed)
}

async fn get_node(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let n = oid_arg(&inv, 1, "node_oid")?;
    let r = reader(&s).await?;
    cluster_in(&s, &r, &c)?;
    let m: WebClusterNodeMembership = get(
        &r,
        &inner_key(&s, &c, &n),
        "web cluster node",
        &n.to_string(),
    )?;
    Ok(wire_record(&m))
}

// ---- services ----------------------------------------------------------------------------

async fn list_services(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let prefix = opt_str_arg(&inv, 1, "prefix")?;
    let r = reader(&s).await?;
    cluster_in(&s, &r, &c)?;
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
        let cluster = cluster_in(&s, &r, &c)?;
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
    cluster_in(&s, &r, &c)?;
    let service: WebService = get(&r, &inner_key(&s, &c, &ws), "web service", &ws.to_string())?;
    Ok(wire_record(&service))
}

async fn get_service_by_path(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "webcluster_oid")?;
    let path = str_arg(&inv, 1, "path")?.to_owned();
    let r = reader(&s).await?;
    cluster_in(&s, &r, &c)?;
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
