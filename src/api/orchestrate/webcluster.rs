//! One pass of a web cluster's reconciler: on every online, non-standby member node, its
//! proxy workers (`cpw-<wc8>-<i>`) run a web transport on the cluster's port serving its web
//! services; the WebSocket services admit the principals of the application realms started
//! on the cluster. Stopping stops the proxy workers.

use serde_json::json;

use super::Orchestrator;
use super::desired::{ArealmAccess, Member, WebClusterPlan};
use super::node_ops::is_missing;
use super::plan::PROXY_TRANSPORT;
use super::status::Report;
use crate::router::internal::CallError;
use crate::store::model::{Json, WebCluster, WebService};

/// The port a web cluster listens on when it names none (Crossbar's default web port).
pub const DEFAULT_PORT: u16 = 8080;

/// `start_proxy_transport` config of the cluster's web transport.
pub fn transport_config(c: &WebCluster, parallel: usize) -> Json {
    let port = c
        .tcp_port
        .as_ref()
        .and_then(Json::as_u64)
        .unwrap_or(DEFAULT_PORT as u64);
    let mut endpoint = json!({
        "type": "tcp",
        "port": port,
        // Several proxy workers of one node share the port (SO_REUSEPORT).
        "shared": c.tcp_shared.as_ref().and_then(Json::as_bool).unwrap_or(parallel > 1),
    });
    if let Some(i) = c.tcp_interface.as_ref().filter(|v| !v.is_null()) {
        endpoint["interface"] = i.clone();
    }
    if let Some(b) = c.tcp_backlog.as_ref().filter(|v| !v.is_null()) {
        endpoint["backlog"] = b.clone();
    }
    if let Some(v) = c.tcp_version.as_ref().filter(|v| !v.is_null()) {
        endpoint["version"] = v.clone();
    }
    let flag =
        |v: &Option<Json>, default: bool| v.as_ref().and_then(Json::as_bool).unwrap_or(default);
    let mut options = json!({
        "access_log": flag(&c.http_access_log, false),
        "display_tracebacks": flag(&c.http_display_tracebacks, false),
        "hsts": flag(&c.http_hsts, false),
    });
    if let Some(v) = c.http_hsts_max_age.as_ref().filter(|v| !v.is_null()) {
        options["hsts_max_age"] = v.clone();
    }
    if let Some(v) = c.http_client_timeout.as_ref().filter(|v| !v.is_null()) {
        options["client_timeout"] = v.clone();
    }
    json!({
        "id": PROXY_TRANSPORT,
        "type": "web",
        "paths": {},
        "endpoint": endpoint,
        "options": options,
    })
}

/// `start_web_transport_service` config of a stored service: what the user gave, and for
/// WebSocket services the principals of the application realms on the cluster added to its
/// authentication (ticket, WAMP-CRA, cryptosign; what the user configured stays).
pub fn service_config(ws: &WebService, arealms: &[ArealmAccess]) -> Json {
    let mut cfg = serde_json::to_value(ws).unwrap_or(Json::Null);
    if let Some(obj) = cfg.as_object_mut() {
        for k in [
            "oid",
            "label",
            "description",
            "tags",
            "cluster_oid",
            "path",
            "webcluster_oid",
            "mrealm_oid",
        ] {
            obj.remove(k);
        }
    }
    if ws.service_type == "websocket" {
        add_principals(&mut cfg, arealms);
    }
    cfg
}

fn add_principals(cfg: &mut Json, arealms: &[ArealmAccess]) {
    let Some(obj) = cfg.as_object_mut() else {
        return;
    };
    let auth = obj.entry("auth").or_insert_with(|| json!({}));
    let Some(auth) = auth.as_object_mut() else {
        return;
    };
    for a in arealms {
        for (p, role, creds) in &a.principals {
            for c in creds {
                let Some((method, list, entry)) = static_principal(c, role, &a.name) else {
                    continue;
                };
                let m = auth
                    .entry(method)
                    .or_insert_with(|| json!({"type": "static"}));
                if let Some(m) = m.as_object_mut() {
                    let l = m.entry(list).or_insert_with(|| json!({}));
                    if let Some(l) = l.as_object_mut() {
                        l.insert(p.authid.clone(), entry);
                    }
                }
            }
        }
    }
}

/// A stored credential as an entry of Crossbar's static authenticators, which accept only
/// their own keys (`checkconfig.py`): (method, list name, entry). Ticket and WAMP-CRA
/// entries cannot name a realm (the client's realm must have a route for the role);
/// cryptosign entries do.
fn static_principal(
    c: &crate::store::model::Credential,
    role: &str,
    realm: &str,
) -> Option<(&'static str, &'static str, Json)> {
    let cfg = c.authconfig.clone().unwrap_or(json!({}));
    let text = |k: &str| cfg.get(k).and_then(Json::as_str).map(str::to_owned);
    match c.authmethod.as_str() {
        "ticket" => {
            let ticket = text("ticket").or_else(|| text("secret"))?;
            Some((
                "ticket",
                "principals",
                json!({"ticket": ticket, "role": role}),
            ))
        }
        "wampcra" => {
            let secret = text("secret").or_else(|| text("ticket"))?;
            let mut e = json!({"secret": secret, "role": role});
            for k in ["salt", "iterations", "keylen"] {
                if let Some(v) = cfg.get(k).filter(|v| !v.is_null()) {
                    e[k] = v.clone();
                }
            }
            Some(("wampcra", "users", e))
        }
        "cryptosign" => {
            let keys = match cfg.get("authorized_keys") {
                Some(Json::Array(k)) => Json::Array(k.clone()),
                _ => json!([text("pubkey")?]),
            };
            Some((
                "cryptosign",
                "principals",
                json!({"authorized_keys": keys, "role": role, "realm": realm}),
            ))
        }
        _ => None,
    }
}

/// A short digest of a service configuration: the edge cannot tell what a running service
/// was started with (its `get_web_transport_service` answers with the transport), so the
/// report keeps what was applied, and a change is applied by replacing the service.
fn digest(cfg: &Json) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cfg.to_string().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The digest the last report says service `path` of worker `id` on node `node` runs with.
fn applied_digest(c: &WebCluster, node: &uuid::Uuid, id: &str, path: &str) -> Option<String> {
    c.orchestration
        .as_ref()?
        .get("nodes")?
        .get(node.to_string())?
        .get("workers")?
        .get(id)?
        .get("services")?
        .get(path)?
        .as_str()
        .map(str::to_owned)
}

impl Orchestrator {
    /// Brings every proxy worker of the cluster to its desired state; the report says per
    /// node what runs and what failed.
    pub(super) async fn webcluster_pass(&self, plan: &WebClusterPlan) -> Report {
        let mut report = Report::default();
        let parallel_of = |ids: &Vec<String>| ids.len();
        let tasks = plan.proxies.iter().map(|(m, ids)| async move {
            let mut n = super::status::NodeReport::new(m.authid(), m.online);
            if m.online {
                for id in ids {
                    match self.proxy_worker(m, id, plan, parallel_of(ids)).await {
                        Ok(services) => {
                            n.workers
                                .insert(id.clone(), json!({"state": "running", "services": services}));
                        }
                        Err((what, e)) => {
                            n.workers.insert(
                                id.clone(),
                                json!({"state": "failed", "error": format!("{what}: {}", e.message)}),
                            );
                            n.fail(&format!("{id} {what}"), &e);
                        }
                    }
                }
            }
            (m.node.oid, n)
        });
        for (oid, n) in futures_util::future::join_all(tasks).await {
            report.nodes.insert(oid.to_string(), n);
        }
        if plan.proxies.is_empty() {
            report
                .problems
                .push("the web cluster has no (non-standby) member nodes".into());
        }
        report
    }

    async fn proxy_worker(
        &self,
        m: &Member,
        id: &str,
        plan: &WebClusterPlan,
        parallel: usize,
    ) -> Result<Json, (String, CallError)> {
        let node = &m.node;
        let ops = &self.ops;
        let at = |what: &str| {
            let what = what.to_owned();
            move |e: CallError| (what, e)
        };
        ops.ensure(
            || ops.node(node, "get_worker", vec![json!(id)]),
            || {
                ops.node(
                    node,
                    "start_worker",
                    vec![json!(id), json!("proxy"), Json::Null],
                )
            },
        )
        .await
        .map_err(at("start_worker"))?;
        ops.ensure(
            || {
                ops.worker(
                    node,
                    id,
                    "get_proxy_transport",
                    vec![json!(PROXY_TRANSPORT)],
                )
            },
            || {
                ops.worker(
                    node,
                    id,
                    "start_proxy_transport",
                    vec![
                        json!(PROXY_TRANSPORT),
                        transport_config(&plan.cluster, parallel),
                    ],
                )
            },
        )
        .await
        .map_err(at("start_proxy_transport"))?;
        let mut services = serde_json::Map::new();
        for ws in &plan.services {
            let want = service_config(ws, &plan.arealms);
            let want_digest = digest(&want);
            let path = json!(ws.path);
            let found = ops
                .worker(
                    node,
                    id,
                    "get_web_transport_service",
                    vec![json!(PROXY_TRANSPORT), path.clone()],
                )
                .await;
            match found {
                Ok(_) => {
                    let applied = applied_digest(&plan.cluster, &node.oid, id, &ws.path);
                    // Unknown (an earlier master version): keep what runs.
                    if applied.is_none() || applied.as_deref() == Some(want_digest.as_str()) {
                        services.insert(ws.path.clone(), json!(applied.unwrap_or(want_digest)));
                        continue;
                    }
                    // Changed (e.g. an application realm's principals): replace it.
                    ops.worker(
                        node,
                        id,
                        "stop_web_transport_service",
                        vec![json!(PROXY_TRANSPORT), path.clone()],
                    )
                    .await
                    .map_err(at(&format!("stop_web_transport_service {}", ws.path)))?;
                }
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err((format!("get_web_transport_service {}", ws.path), e)),
            }
            ops.worker(
                node,
                id,
                "start_web_transport_service",
                vec![json!(PROXY_TRANSPORT), path, want],
            )
            .await
            .map_err(at(&format!("start_web_transport_service {}", ws.path)))?;
            services.insert(ws.path.clone(), json!(want_digest));
        }
        Ok(Json::Object(services))
    }

    /// Stops the cluster's proxy workers on every online member node; true when none is
    /// left on any online node.
    pub(super) async fn webcluster_teardown(&self, plan: &WebClusterPlan) -> Report {
        let mut report = Report::default();
        for (m, ids) in &plan.proxies {
            let n = report.node(&m.node.oid, m.authid(), m.online);
            if !m.online {
                // Nothing to stop there now; a node coming back with them is cleaned up by
                // the node sweep.
                n.online = true;
                continue;
            }
            for id in ids {
                match self.stop_worker(&m.node, id).await {
                    Ok(()) => {
                        n.workers.insert(id.clone(), json!({"state": "stopped"}));
                    }
                    Err(e) => n.fail(&format!("stop_worker {id}"), &e),
                }
            }
        }
        report
    }
}
