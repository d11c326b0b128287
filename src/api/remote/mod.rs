//! `crossbarfabriccenter.remote.*` (spec §5.1, §5.3): management calls addressed to a node
//! by its oid are forwarded to the procedures the node registered on the master
//! (`crossbarfabriccenter.node.<authid>.…`), on this replica or on the replica that holds the
//! node's session; node events are republished under `crossbarfabriccenter.remote.*`.

mod apis;
mod direct;
mod mapping;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::errors::bad_argument;
use super::scope::Scope;
use crate::router::internal::{CallError, Caller, Event, Handler, Invocation};
use crate::router::realm::CallRetarget;
use crate::store::Index;
use crate::store::model::{Node, Presence};
use crate::wamp::errors::{INVALID_ARGUMENT, NO_SUCH_PROCEDURE, NOT_AUTHORIZED};
use crate::wamp::{Payload, Value};

pub use apis::NODE_CALL_TIMEOUT;
use apis::*;
pub use direct::DirectRoutes;
use mapping::*;

pub const REALM_META_PREFIX: &str = "crossbarfabriccenter.remote.realm.meta.";

/// Routes node calls: locally when this replica holds the node's session, else to the
/// replica that does.
/// The paired nodes by oid, and the applied index they were read at.
type PairedAt = (Option<u64>, Arc<HashMap<uuid::Uuid, Node>>);

#[derive(Clone)]
pub struct Forwarder {
    scope: Arc<Scope>,
    caller: Caller,
    /// The realm's paired nodes by oid, as of an applied log index: every forwarded call
    /// maps an oid, and the pairings change rarely.
    paired: Arc<parking_lot::Mutex<Option<PairedAt>>>,
}

impl Forwarder {
    pub fn new(scope: Arc<Scope>, caller: Caller) -> Forwarder {
        Forwarder {
            scope,
            caller,
            paired: Default::default(),
        }
    }

    fn applied_index(&self) -> Option<u64> {
        self.scope
            .ctx
            .replica
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
    }

    fn paired_nodes(&self) -> Result<Arc<HashMap<uuid::Uuid, Node>>, CallError> {
        let applied = self.applied_index();
        if let Some((at, nodes)) = self.paired.lock().as_ref()
            && *at == applied
        {
            return Ok(nodes.clone());
        }
        let replica = &self.scope.ctx.replica;
        let r = replica.reader()?;
        let prefix = format!("{}/", self.scope.mrealm_oid);
        let mut nodes = HashMap::new();
        for key in r.index_keys(Index::NodeByMrealm, &prefix)? {
            let oid = key.strip_prefix(&prefix).unwrap_or(&key);
            if let Some(n) = r.get::<Node>(oid)? {
                nodes.insert(n.oid, n);
            }
        }
        let nodes = Arc::new(nodes);
        *self.paired.lock() = Some((applied, nodes.clone()));
        Ok(nodes)
    }

    /// The paired node `id` names: an oid, or (for the realm-meta API, where the reference
    /// takes authids) an authid.
    fn node(
        &self,
        paired: &HashMap<uuid::Uuid, Node>,
        id: &str,
        authid_allowed: bool,
    ) -> Result<Node, CallError> {
        if let Ok(oid) = uuid::Uuid::parse_str(id) {
            return paired
                .get(&oid)
                .filter(|n| n.authid.is_some())
                .cloned()
                .ok_or_else(|| self.not_paired(id));
        }
        if !authid_allowed {
            return Err(bad_argument(format!("node_oid {id:?} is not a UUID")));
        }
        // The realm-meta API addresses nodes by authid, as the reference does.
        paired
            .values()
            .find(|n| n.authid.as_deref() == Some(id))
            .cloned()
            .ok_or_else(|| self.not_paired(id))
    }

    /// The paired node `id` names, by oid or by authid (traced workers name nodes either way).
    pub fn resolve_node(&self, id: &str) -> Result<Node, CallError> {
        self.node(&*self.paired_nodes()?, id, true)
    }

    /// Whether the node has a management session on some replica (its presence record).
    pub fn is_online(&self, node: &Node) -> Result<bool, CallError> {
        Ok(self
            .presence(node)?
            .is_some_and(|p| p.mrealm_oid == self.scope.mrealm_oid))
    }

    /// The node's presence record: which replica holds its session, if any.
    fn presence(&self, node: &Node) -> Result<Option<Presence>, CallError> {
        self.scope
            .ctx
            .replica
            .reader()?
            .get(&node.oid.to_string())
            .map_err(CallError::from)
    }

    /// What `crossbarfabriccenter.remote.<api>.<remote_name>(node, worker_id, *args)` does,
    /// for the master's own use: the same node procedure, reached the same way.
    pub async fn call_worker(
        &self,
        node: &Node,
        api: &str,
        remote_name: &str,
        worker_id: &str,
        payload: Payload,
    ) -> Result<Payload, CallError> {
        let node_name = APIS
            .iter()
            .filter(|a| a.name == api && a.level == Level::Worker)
            .flat_map(|a| a.procs.iter())
            .find(|(r, _)| *r == remote_name)
            .map(|(_, n)| *n)
            .ok_or_else(|| {
                CallError::new(
                    NO_SUCH_PROCEDURE,
                    format!("no worker procedure remote.{api}.{remote_name}"),
                )
            })?;
        check_id(worker_id, "worker_id")?;
        let authid = node.authid.as_deref().unwrap_or_default();
        let procedure = worker_procedure(authid, worker_id, node_name);
        self.call(node, procedure, payload).await
    }

    fn not_paired(&self, id: &str) -> CallError {
        CallError::new(
            "crossbar.error.no_such_object",
            format!(
                "no node {id} is paired with management realm {}",
                self.scope.mrealm_name
            ),
        )
    }

    /// Calls `procedure` on the node's session wherever it is.
    pub async fn call(
        &self,
        node: &Node,
        procedure: String,
        payload: Payload,
    ) -> Result<Payload, CallError> {
        let authid = node.authid.as_deref().unwrap_or_default();
        let first = self
            .caller
            .call(&procedure, payload.clone(), NODE_CALL_TIMEOUT)
            .await;
        match first {
            Err(e) if e.uri == NO_SUCH_PROCEDURE => {}
            other => return other,
        }
        match self.presence(node)? {
            Some(p) if p.replica_id != self.scope.ctx.replica.id => {
                self.scope
                    .ctx
                    .replica
                    .call_node_on(
                        p.replica_id,
                        &self.scope.mrealm_name,
                        &procedure,
                        payload,
                        NODE_CALL_TIMEOUT,
                    )
                    .await
            }
            Some(_) => Err(CallError::new(
                NO_SUCH_PROCEDURE,
                format!(
                    "node {authid} ({}) is connected but offers no procedure <{procedure}>",
                    node.oid
                ),
            )),
            None => Err(CallError::new(
                NO_SUCH_PROCEDURE,
                format!(
                    "node {authid} ({}) is not connected: no callee for <{procedure}>",
                    node.oid
                ),
            )),
        }
    }

    /// One handler per remote procedure, plus the realm-meta prefix.
    pub fn handlers(&self) -> Vec<(String, bool, Handler)> {
        let mut out: Vec<(String, bool, Handler)> = Vec::new();
        for api in &APIS {
            for &(remote_name, node_name) in api.procs {
                let me = self.clone();
                let level = api.level;
                let h: Handler = Arc::new(move |inv: Invocation| {
                    let me = me.clone();
                    Box::pin(async move { me.forward(inv, level, remote_name, node_name).await })
                });
                out.push((
                    format!("crossbarfabriccenter.remote.{}.{remote_name}", api.name),
                    false,
                    h,
                ));
            }
        }
        let me = self.clone();
        let meta: Handler = Arc::new(move |inv: Invocation| {
            let me = me.clone();
            Box::pin(async move { me.forward_meta(inv).await })
        });
        out.push((REALM_META_PREFIX.to_owned(), true, meta));
        out
    }

    async fn forward(
        &self,
        inv: Invocation,
        level: Level,
        remote_name: &str,
        node_name: &str,
    ) -> Result<Payload, CallError> {
        let paired = self.paired_nodes()?;
        let (node, procedure, payload) = self.target(
            &paired,
            level,
            remote_name,
            node_name,
            inv.caller_authrole(),
            &inv.payload,
        )?;
        self.call(&node, procedure, payload).await
    }

    /// The node, its procedure and the payload a `remote.<api>.<remote_name>` call maps to.
    fn target(
        &self,
        paired: &HashMap<uuid::Uuid, Node>,
        level: Level,
        remote_name: &str,
        node_name: &str,
        role: Option<&str>,
        payload: &Payload,
    ) -> Result<(Node, String, Payload), CallError> {
        may_call(role, remote_name)?;
        let (node_id, rest) = split_args(payload, 1, &["node_oid"])?;
        let node = self.node(paired, &node_id[0], false)?;
        let authid = node.authid.as_deref().unwrap_or_default();
        let procedure = match level {
            Level::Node => format!("crossbarfabriccenter.node.{authid}.{node_name}"),
            Level::Worker => {
                let (worker, _) = split_args(payload, 2, &["node_oid", "worker_id"])?;
                check_id(&worker[1], "worker_id")?;
                worker_procedure(authid, &worker[1], node_name)
            }
        };
        let skip = if level == Level::Node { 1 } else { 2 };
        let payload = forwarded_payload(payload, skip, rest);
        Ok((node, procedure, payload))
    }

    async fn forward_meta(&self, inv: Invocation) -> Result<Payload, CallError> {
        let paired = self.paired_nodes()?;
        let (node, procedure, payload) =
            self.meta_target(&paired, &inv.procedure, inv.caller_authrole(), &inv.payload)?;
        self.call(&node, procedure, payload).await
    }

    /// The node, its procedure and the payload a `remote.realm.meta.wamp.*` call maps to.
    fn meta_target(
        &self,
        paired: &HashMap<uuid::Uuid, Node>,
        remote_procedure: &str,
        role: Option<&str>,
        payload: &Payload,
    ) -> Result<(Node, String, Payload), CallError> {
        let suffix = remote_procedure
            .strip_prefix(REALM_META_PREFIX)
            .unwrap_or_default();
        if !suffix.starts_with("wamp.") {
            return Err(bad_argument(format!(
                "{remote_procedure} is not a realm meta procedure (wamp.*)"
            )));
        }
        let read_only = !["kill", "remove", "add_testament", "flush_testaments"]
            .iter()
            .any(|w| suffix.contains(w));
        match role {
            Some("owner" | "admin") => {}
            Some("user" | "guest") if read_only => {}
            role => {
                return Err(CallError::new(
                    NOT_AUTHORIZED,
                    format!("role {role:?} may not call {suffix} on nodes"),
                ));
            }
        }
        let (ids, rest) = split_args(payload, 3, &["node_id", "worker_id", "realm_id"])?;
        let node = self.node(paired, &ids[0], true)?;
        check_id(&ids[1], "worker_id")?;
        check_id(&ids[2], "realm_id")?;
        let procedure = format!(
            "crossbarfabriccenter.node.{}.worker.{}.realm.{}.root.{suffix}",
            node.authid.as_deref().unwrap_or_default(),
            ids[1],
            ids[2]
        );
        let payload = forwarded_payload(payload, 3, rest);
        Ok((node, procedure, payload))
    }

    /// The dealer-side shortcut for this realm's `remote.*` calls (see `DirectRoutes`).
    pub fn direct_routes(&self) -> Arc<DirectRoutes> {
        let mut procs = HashMap::new();
        for api in &APIS {
            for &(remote_name, node_name) in api.procs {
                procs.insert(
                    format!("crossbarfabriccenter.remote.{}.{remote_name}", api.name),
                    (api.level, remote_name, node_name),
                );
            }
        }
        Arc::new(DirectRoutes {
            forwarder: self.clone(),
            procs,
        })
    }

    /// Node events under `crossbarfabriccenter.node.` republished under
    /// `crossbarfabriccenter.remote.` (spec §5.3).
    pub fn republish(&self, ev: &Event) {
        if let Some((topic, args)) = remote_topic(&ev.topic, ev.args()) {
            self.scope
                .events
                .publish_local_with(&topic, args, ev.payload.kwargs.clone());
        }
    }
}
