//! One pass of an application realm's reconciler (`../shared/spec/orchestration.md` A–C,
//! with the reference's bugs fixed):
//!
//! A. on each placement of its worker group (node N, router worker W), on online nodes: the
//!    worker, the realm `rlm_<a8>` with the `rlink` role and the realm's roles, and the
//!    transport `tnp_<a8>` admitting the router cluster's member nodes (router links and
//!    proxies, by their keys);
//! A5. a full mesh of router links: W on N toward every other placement's transport;
//! B. on every proxy worker of its web cluster: one connection per placement's transport and
//!    one route per connection mapping each of the realm's roles to it (checked first, so
//!    nothing is added twice).
//!
//! Stopping stops the router workers of its placements.

use std::collections::HashMap;

use serde_json::json;

use super::Orchestrator;
use super::desired::{ArealmPlan, Placement};
use super::node_ops::is_missing;
use super::plan;
use super::status::{NodeReport, Report};
use crate::router::internal::CallError;
use crate::store::model::Json;

type StepError = (String, CallError);

/// How long a pass waits for a router link to connect. The edge answers
/// `start_router_realm_link` once the link is up, which can take long while the other
/// worker comes back; the link keeps trying on its own and the next pass finds it.
const LINK_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn at(what: impl Into<String>) -> impl FnOnce(CallError) -> StepError {
    let what = what.into();
    move |e| (what, e)
}

/// Whether a web cluster's proxies can take routes: it is started and not being stopped.
fn serving(status: &str) -> bool {
    matches!(status, "STARTING" | "RUNNING" | "DEGRADED")
}

impl Orchestrator {
    pub(super) async fn arealm_pass(&self, p: &ArealmPlan) -> Report {
        let mut report = Report::default();
        if p.group.is_none() {
            report
                .problems
                .push("the router worker group of the application realm is gone".into());
            return report;
        }
        if p.placements.is_empty() {
            report
                .problems
                .push("the router worker group has no placements".into());
            return report;
        }
        // A: workers, realm, roles, transport; the transport's port per placement.
        let steps = p.placements.iter().map(|pl| async move {
            let r = if pl.member.online {
                self.router_worker(p, pl).await
            } else {
                Err(("offline".into(), CallError::new("", "")))
            };
            (pl, r)
        });
        let mut ports: HashMap<String, u16> = HashMap::new();
        for (pl, r) in futures_util::future::join_all(steps).await {
            let n = report.node(&pl.member.node.oid, pl.member.authid(), pl.member.online);
            match r {
                Ok(port) => {
                    ports.insert(pl.worker().to_owned(), port);
                    n.workers.insert(
                        pl.worker().to_owned(),
                        json!({"state": "running", "transport": plan::transport_id(&p.arealm.oid), "port": port}),
                    );
                }
                Err(_) if !pl.member.online => {
                    n.workers
                        .insert(pl.worker().to_owned(), json!({"state": "offline"}));
                }
                Err((what, e)) => {
                    n.workers.insert(
                        pl.worker().to_owned(),
                        json!({"state": "failed", "error": format!("{what}: {}", e.message)}),
                    );
                    n.fail(&format!("{} {what}", pl.worker()), &e);
                }
            }
        }
        // A5: router links between the placements that are up.
        let up: Vec<&Placement> = p
            .placements
            .iter()
            .filter(|pl| ports.contains_key(pl.worker()))
            .collect();
        let links = up.iter().map(|from| {
            let up = &up;
            let ports = &ports;
            async move {
                let mut failed = None;
                for to in up.iter().filter(|to| to.worker() != from.worker()) {
                    let port = ports[to.worker()];
                    if let Err(e) = self.link(p, from, to, port).await {
                        failed = Some(e);
                        break;
                    }
                }
                (*from, failed)
            }
        });
        for (from, failed) in futures_util::future::join_all(links).await {
            if let Some((what, e)) = failed {
                report
                    .node(&from.member.node.oid, from.member.authid(), true)
                    .fail(&format!("{} {what}", from.worker()), &e);
            }
        }
        // B: the web cluster's proxies route the realm's roles to every placement.
        if let Some(wc) = &p.webcluster {
            if !serving(&wc.cluster.status) {
                report.problems.push(format!(
                    "web cluster {} is {}",
                    wc.cluster.name, wc.cluster.status
                ));
            } else {
                let proxies = wc.proxies.iter().filter(|(m, _)| m.online).map(|(m, ids)| {
                    let up = &up;
                    let ports = &ports;
                    async move {
                        let mut failed = None;
                        for id in ids {
                            if let Err(e) = self.routes(p, &m.node, id, up, ports).await {
                                failed = Some((id.clone(), e));
                                break;
                            }
                        }
                        (m, failed)
                    }
                });
                for (m, failed) in futures_util::future::join_all(proxies).await {
                    let n: &mut NodeReport = report.node(&m.node.oid, m.authid(), true);
                    if let Some((id, (what, e))) = failed {
                        n.fail(&format!("{id} {what}"), &e);
                    }
                }
            }
        }
        report
    }

    /// A: the placement's router worker and what the realm needs in it; the port of the
    /// realm's transport there.
    async fn router_worker(&self, p: &ArealmPlan, pl: &Placement) -> Result<u16, StepError> {
        let (ops, node, w) = (&self.ops, &pl.member.node, pl.worker());
        let a = &p.arealm.oid;
        let options = json!({
            "env": {"inherit": ["PYTHONPATH"]},
            "title": format!("Managed router worker {w}"),
            "extra": {},
        });
        ops.ensure(
            || ops.node(node, "get_worker", vec![json!(w)]),
            || {
                ops.node(
                    node,
                    "start_worker",
                    vec![json!(w), json!("router"), options],
                )
            },
        )
        .await
        .map_err(at("start_worker"))?;
        let realm = plan::realm_id(a);
        ops.ensure(
            || ops.worker(node, w, "get_router_realm", vec![json!(realm)]),
            || {
                ops.worker(
                    node,
                    w,
                    "start_router_realm",
                    vec![json!(realm), plan::realm_config(&p.arealm.name)],
                )
            },
        )
        .await
        .map_err(at("start_router_realm"))?;
        let rlink = plan::rlink_role_id(a);
        ops.ensure(
            || {
                ops.worker(
                    node,
                    w,
                    "get_router_realm_role",
                    vec![json!(realm), json!(rlink)],
                )
            },
            || {
                ops.worker(
                    node,
                    w,
                    "start_router_realm_role",
                    vec![json!(realm), json!(rlink), plan::rlink_role()],
                )
            },
        )
        .await
        .map_err(at("start_router_realm_role rlink"))?;
        for (role, perms) in &p.roles {
            let id = plan::role_id(&role.oid);
            let want = plan::role_config(&role.name, perms, p.placements.len() > 1);
            let found = ops
                .worker(
                    node,
                    w,
                    "get_router_realm_role",
                    vec![json!(realm), json!(id)],
                )
                .await;
            match found {
                Ok(running) if role_matches(&running, &want) => continue,
                Ok(_) => {
                    // Permissions changed: the edge replaces a role by stop and start.
                    ops.worker(
                        node,
                        w,
                        "stop_router_realm_role",
                        vec![json!(realm), json!(id)],
                    )
                    .await
                    .map_err(at(format!("stop_router_realm_role {}", role.name)))?;
                }
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err((format!("get_router_realm_role {}", role.name), e)),
            }
            ops.worker(
                node,
                w,
                "start_router_realm_role",
                vec![json!(realm), json!(id), want],
            )
            .await
            .map_err(at(format!("start_router_realm_role {}", role.name)))?;
        }
        let tnp = plan::transport_id(a);
        let members: Vec<&crate::store::model::Node> =
            p.cluster_members.iter().map(|m| &m.node).collect();
        let ip = plan::cluster_ip(node);
        let config =
            |port: Option<u16>| plan::transport_config(&tnp, &p.arealm.name, &ip, port, &members);
        // The port the transport had before (a restarted node): taken again if free, so the
        // other workers' links and the proxies' connections (which the edge can neither
        // change nor stop) find it where they point.
        let before = reported_port(&p.arealm.extra, &node.oid, w);
        let transport = match ops
            .worker(node, w, "get_router_transport", vec![json!(tnp)])
            .await
        {
            Ok(t) => t,
            Err(e) if is_missing(&e) => {
                let start = |cfg: Json| {
                    ops.worker(node, w, "start_router_transport", vec![json!(tnp), cfg])
                };
                match before {
                    Some(port) => match start(config(Some(port))).await {
                        Ok(t) => t,
                        Err(e) if e.uri == "crossbar.error.cannot_listen" => start(config(None))
                            .await
                            .map_err(at("start_router_transport"))?,
                        Err(e) => return Err(("start_router_transport".into(), e)),
                    },
                    None => start(config(None))
                        .await
                        .map_err(at("start_router_transport"))?,
                }
            }
            Err(e) => return Err(("get_router_transport".into(), e)),
        };
        transport_port(&transport).ok_or_else(|| {
            (
                "start_router_transport".into(),
                CallError::new(
                    "crossbar.error.invalid_configuration",
                    format!("transport {tnp} reports no port: {transport}"),
                ),
            )
        })
    }

    /// A5: the router link on `from` toward `to`'s transport.
    async fn link(
        &self,
        p: &ArealmPlan,
        from: &Placement,
        to: &Placement,
        port: u16,
    ) -> Result<(), StepError> {
        let (ops, node, w) = (&self.ops, &from.member.node, from.worker());
        let realm = plan::realm_id(&p.arealm.oid);
        let id = plan::link_id(&p.arealm.oid, w, &to.member.node.oid, to.worker());
        let cfg = plan::link_config(
            &p.arealm.name,
            from.member.authid(),
            &plan::cluster_ip(&to.member.node),
            port,
        );
        let found = ops
            .worker(
                node,
                w,
                "get_router_realm_link",
                vec![json!(realm), json!(id)],
            )
            .await;
        match found {
            Ok(running) if link_port(&running) == Some(port) => return Ok(()),
            Ok(_) => {
                // The other worker came back on another port. The edge cannot stop a link
                // (`stop_router_realm_link` raises in 26.10.1), so this worker is restarted
                // and rebuilt by the next pass.
                self.stop_worker(node, w)
                    .await
                    .map_err(at(format!("stop_worker {w} (stale link {id})")))?;
                return Err((
                    format!("link {id}"),
                    CallError::new(
                        "crossbar.error.stale_link",
                        format!("restarted {w}: its link pointed at a port no longer served"),
                    ),
                ));
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err((format!("get_router_realm_link {id}"), e)),
        }
        let started = ops
            .worker_within(
                LINK_START_TIMEOUT,
                node,
                w,
                "start_router_realm_link",
                vec![json!(realm), json!(id), cfg],
            )
            .await;
        match started {
            Ok(_) => Ok(()),
            // Not answered yet, but the edge may already run it (it answers once the link
            // is connected): then it is there, and connects on its own.
            Err(e) if e.uri == super::node_ops::TIMEOUT_URI => ops
                .worker(
                    node,
                    w,
                    "get_router_realm_link",
                    vec![json!(realm), json!(id)],
                )
                .await
                .map(|_| ())
                .map_err(|_| (format!("start_router_realm_link {id}"), e)),
            Err(e) => Err((format!("start_router_realm_link {id}"), e)),
        }
    }

    /// B: on proxy worker `id`, a connection to each placement's transport and a route of
    /// the realm's roles to it.
    async fn routes(
        &self,
        p: &ArealmPlan,
        proxy_node: &crate::store::model::Node,
        id: &str,
        up: &[&Placement],
        ports: &HashMap<String, u16>,
    ) -> Result<(), StepError> {
        let ops = &self.ops;
        let realm = &p.arealm.name;
        let existing = match ops
            .worker(
                proxy_node,
                id,
                "list_proxy_realm_routes",
                vec![json!(realm)],
            )
            .await
        {
            Ok(Json::Array(routes)) => routes,
            Ok(_) => Vec::new(),
            Err(e) if is_missing(&e) => Vec::new(),
            Err(e) => return Err(("list_proxy_realm_routes".into(), e)),
        };
        let roles: Vec<&str> = p.roles.iter().map(|(r, _)| r.name.as_str()).collect();
        for pl in up {
            let port = ports[pl.worker()];
            let cnc = plan::connection_id(&p.arealm.oid, pl.member.authid(), pl.worker());
            let host = plan::cluster_ip(&pl.member.node);
            let found = ops
                .worker(proxy_node, id, "get_proxy_connection", vec![json!(cnc)])
                .await;
            match found {
                Ok(c) if connection_port(&c) == Some(port) => {}
                Ok(_) => {
                    // The router worker came back on another port. The edge keeps stopped
                    // connections in its rotation, so only a fresh proxy worker forgets the
                    // old one: restart it; the next passes rebuild it.
                    self.stop_worker(proxy_node, id)
                        .await
                        .map_err(at(format!("stop_worker {id} (stale connection {cnc})")))?;
                    return Err((
                        format!("connection {cnc}"),
                        CallError::new(
                            "crossbar.error.stale_link",
                            format!(
                                "restarted {id}: its connection pointed at a port no longer served"
                            ),
                        ),
                    ));
                }
                Err(e) if is_missing(&e) => {
                    self.start_connection(proxy_node, id, &cnc, &host, port, pl)
                        .await?;
                }
                Err(e) => return Err((format!("get_proxy_connection {cnc}"), e)),
            }
            if roles.is_empty() || routed(&existing, &cnc, &roles) {
                continue;
            }
            self.start_route(proxy_node, id, realm, &roles, &cnc)
                .await?;
        }
        Ok(())
    }

    async fn start_connection(
        &self,
        proxy_node: &crate::store::model::Node,
        id: &str,
        cnc: &str,
        host: &str,
        port: u16,
        pl: &Placement,
    ) -> Result<(), StepError> {
        self.ops
            .worker(
                proxy_node,
                id,
                "start_proxy_connection",
                vec![
                    json!(cnc),
                    plan::connection_config(host, port, pl.member.authid()),
                ],
            )
            .await
            .map(|_| ())
            .map_err(at(format!("start_proxy_connection {cnc}")))
    }

    async fn start_route(
        &self,
        proxy_node: &crate::store::model::Node,
        id: &str,
        realm: &str,
        roles: &[&str],
        cnc: &str,
    ) -> Result<(), StepError> {
        if roles.is_empty() {
            return Ok(());
        }
        let route: serde_json::Map<String, Json> =
            roles.iter().map(|r| (r.to_string(), json!(cnc))).collect();
        self.ops
            .worker(
                proxy_node,
                id,
                "start_proxy_realm_route",
                vec![json!(realm), Json::Object(route)],
            )
            .await
            .map(|_| ())
            .map_err(at(format!("start_proxy_realm_route via {cnc}")))
    }
}

/// The port the last report says the realm's transport had on worker `w` of `node`.
pub(super) fn reported_port(
    extra: &crate::store::model::Extra,
    node: &uuid::Uuid,
    w: &str,
) -> Option<u16> {
    extra
        .get("orchestration")?
        .get("nodes")?
        .get(node.to_string())?
        .get("workers")?
        .get(w)?
        .get("port")?
        .as_u64()
        .map(|p| p as u16)
}

/// The port a router transport listens on: with a port range, the edge writes the port it
/// picked into the transport's config.
fn transport_port(t: &Json) -> Option<u16> {
    let c = t.get("config").unwrap_or(t);
    c.get("endpoint")?.get("port")?.as_u64().map(|p| p as u16)
}

fn link_port(l: &Json) -> Option<u16> {
    let c = l.get("config").unwrap_or(l);
    c.get("transport")?
        .get("endpoint")?
        .get("port")?
        .as_u64()
        .map(|p| p as u16)
}

fn connection_port(c: &Json) -> Option<u16> {
    link_port(c)
}

/// Whether `running` (as the edge reports a role) has the permissions of `want`.
fn role_matches(running: &Json, want: &Json) -> bool {
    let running = running.get("config").unwrap_or(running);
    running.get("permissions") == want.get("permissions")
}

/// Whether some running route maps every one of `roles` to `cnc`.
fn routed(routes: &[Json], cnc: &str, roles: &[&str]) -> bool {
    routes.iter().any(|r| {
        r.get("config").and_then(Json::as_object).is_some_and(|c| {
            roles
                .iter()
                .all(|role| c.get(*role).and_then(Json::as_str) == Some(cnc))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_found_by_connection_and_roles() {
        let routes = vec![
            json!({"id": "route000", "config": {"app": "cnc_a", "admin": "cnc_a"}}),
            json!({"id": "route001", "config": {"app": "cnc_b"}}),
        ];
        assert!(routed(&routes, "cnc_a", &["app", "admin"]));
        assert!(!routed(&routes, "cnc_b", &["app", "admin"]));
        assert!(routed(&routes, "cnc_b", &["app"]));
    }

    #[test]
    fn the_picked_port_is_read_from_the_config() {
        let t = json!({"id": "tnp_x", "config": {"endpoint": {"type": "tcp", "portrange": [10000, 10100], "port": 10003}}});
        assert_eq!(transport_port(&t), Some(10003));
        let l = json!({"config": {"transport": {"endpoint": {"port": 10004}}}});
        assert_eq!(link_port(&l), Some(10004));
    }
}
