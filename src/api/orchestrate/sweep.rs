//! The node sweep: workers the master started for objects that no longer want them are
//! stopped. A node that was offline while its application realm or web cluster was stopped
//! (or that was removed from the web cluster) still runs them when it comes back; the
//! object's own reconciler no longer runs, so the sweep does.
//!
//! Only ids the master can attribute are touched: `cpw-<8>-<i>` of a web cluster of this
//! management realm, and the placement names of its worker groups on that node. Anything
//! else on the node (workers an operator started) is left alone.

use std::collections::HashSet;

use serde_json::json;

use super::Orchestrator;
use super::desired::Member;
use super::plan;
use crate::router::internal::CallError;
use crate::store::model::{
    ApplicationRealm, Json, Node, Presence, RouterWorkerGroupClusterPlacement, WebCluster,
    WebClusterNodeMembership,
};

/// What the sweep may stop on one node: (worker id, why it is not wanted).
pub(super) fn unwanted(
    r: &crate::store::Reader,
    mrealm: &uuid::Uuid,
    node: &uuid::Uuid,
) -> Result<Vec<(String, String)>, CallError> {
    let active = |status: &str| status != "STOPPED";
    let mut wanted = HashSet::new();
    let mut known = Vec::new();
    for wc in r.list::<WebCluster>(&format!("{mrealm}/"))? {
        let membership =
            r.get::<WebClusterNodeMembership>(&format!("{mrealm}/{}/{node}", wc.oid))?;
        let parallel = membership.as_ref().and_then(|m| m.parallel).unwrap_or(1);
        // Up to the largest parallelism a web cluster allows here.
        for id in plan::proxy_worker_ids(&wc.oid, parallel.max(1)) {
            let serving =
                active(&wc.status) && membership.as_ref().is_some_and(|m| m.standby != Some(true));
            if serving {
                wanted.insert(id.clone());
            }
            known.push((id, format!("web cluster {} is {}", wc.name, wc.status)));
        }
    }
    let arealms = r.list::<ApplicationRealm>(&format!("{mrealm}/"))?;
    for p in r.list::<RouterWorkerGroupClusterPlacement>(&format!("{mrealm}/"))? {
        if p.node_oid != *node {
            continue;
        }
        let used = arealms
            .iter()
            .any(|a| a.workergroup_oid == Some(p.worker_group_oid) && active(&a.status));
        if used {
            wanted.insert(p.worker_name.clone());
        }
        known.push((
            p.worker_name.clone(),
            "no application realm runs on its worker group".into(),
        ));
    }
    Ok(known
        .into_iter()
        .filter(|(id, _)| !wanted.contains(id))
        .collect())
}

impl Orchestrator {
    /// One sweep over the online nodes of this management realm.
    pub(super) async fn sweep(&self) -> Result<(), CallError> {
        let m = self.scope.mrealm_oid;
        let nodes: Vec<(Member, Vec<(String, String)>)> = {
            let r = self.scope.ctx.replica.reader()?;
            let mut out = Vec::new();
            for p in r.list::<Presence>("")? {
                if p.mrealm_oid != m {
                    continue;
                }
                let Some(node) = r.get::<Node>(&p.node_oid.to_string())? else {
                    continue;
                };
                let stop = unwanted(&r, &m, &node.oid)?;
                if !stop.is_empty() {
                    out.push((Member { node, online: true }, stop));
                }
            }
            out
        };
        for (member, stop) in nodes {
            let running = match self.ops.node(&member.node, "get_workers", vec![]).await {
                Ok(Json::Array(ids)) => ids,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!("sweep: get_workers on {}: {}", member.authid(), e.message);
                    continue;
                }
            };
            for (id, why) in stop {
                if !running.contains(&json!(id)) {
                    continue;
                }
                if !self.scope.ctx.replica.is_leader() {
                    return Ok(());
                }
                match self.stop_worker(&member.node, &id).await {
                    Ok(()) => tracing::info!(
                        "sweep: stopped worker {id} on node {} ({why})",
                        member.authid()
                    ),
                    Err(e) => tracing::warn!(
                        "sweep: worker {id} on node {} not stopped: {} {}",
                        member.authid(),
                        e.uri,
                        e.message
                    ),
                }
            }
        }
        Ok(())
    }
}
