//! Stopping an application realm: its router workers and its routes on the web cluster's
//! proxies go (the rest of its life is in `arealm.rs`).

use serde_json::json;

use super::Orchestrator;
use super::arealm::reported_port;
use super::desired::ArealmPlan;
use super::node_ops::is_missing;
use super::status::Report;
use crate::router::internal::CallError;
use crate::store::model::Json;

impl Orchestrator {
    /// Stops the router workers of the realm's placements on online nodes. Other
    /// application realms on the same worker group lose them too, and their reconcilers
    /// start them again at once (the edge cannot stop a single realm: its
    /// `stop_router_realm` raises in 26.10.1).
    pub(super) async fn arealm_teardown(&self, p: &ArealmPlan) -> Report {
        let mut report = Report::default();
        let stops = p
            .placements
            .iter()
            .filter(|pl| pl.member.online)
            .map(|pl| async move { (pl, self.stop_worker(&pl.member.node, pl.worker()).await) });
        for (pl, r) in futures_util::future::join_all(stops).await {
            let n = report.node(&pl.member.node.oid, pl.member.authid(), true);
            match r {
                Ok(()) => {
                    // The port stays in the report: started again, the realm's transport
                    // asks for it first, so the proxies' connections (which the edge
                    // never forgets) still point at the right place.
                    let port = reported_port(&p.arealm.extra, &pl.member.node.oid, pl.worker());
                    n.workers.insert(
                        pl.worker().to_owned(),
                        json!({"state": "stopped", "port": port}),
                    );
                }
                Err(e) => n.fail(&format!("stop_worker {}", pl.worker()), &e),
            }
        }
        // Other realms on the same workers start them again now.
        self.recheck(super::Target::Arealm);
        // Routes on the web cluster's proxies would point at connections to the stopped
        // workers; drop them.
        if let Some(wc) = &p.webcluster {
            for (m, ids) in wc.proxies.iter().filter(|(m, _)| m.online) {
                for id in ids {
                    if let Err(e) = self.drop_routes(&m.node, id, &p.arealm.name).await {
                        report
                            .node(&m.node.oid, m.authid(), true)
                            .fail(&format!("{id} stop_proxy_realm_route"), &e);
                    }
                }
            }
        }
        report
    }

    async fn drop_routes(
        &self,
        node: &crate::store::model::Node,
        id: &str,
        realm: &str,
    ) -> Result<(), CallError> {
        let routes = match self
            .ops
            .worker(node, id, "list_proxy_realm_routes", vec![json!(realm)])
            .await
        {
            Ok(Json::Array(r)) => r,
            Ok(_) => return Ok(()),
            Err(e) if is_missing(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for r in routes {
            if let Some(rid) = r.get("id").and_then(Json::as_str) {
                match self
                    .ops
                    .worker(
                        node,
                        id,
                        "stop_proxy_realm_route",
                        vec![json!(realm), json!(rid)],
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
