//! `crossbarfabriccenter.remote.*` (spec §5.1, §5.3): management calls addressed to a node
//! by its oid are forwarded to the procedures the node registered on the master
//! (`crossbarfabriccenter.node.<authid>.…`), on this replica or on the replica that holds the
//! node's session; node events are republished under `crossbarfabriccenter.remote.*`.

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

/// Management calls may start workers or pull images; they get this long.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Level {
    /// `(node_oid, *args)` → `crossbarfabriccenter.node.<authid>.<proc>`.
    Node,
    /// `(node_oid, worker_id, *args)` → `….node.<authid>.worker.<worker_id>.<proc>`.
    Worker,
}

struct Api {
    name: &'static str,
    level: Level,
    /// (remote name, node-side name); most are the same.
    procs: &'static [(&'static str, &'static str)],
}

macro_rules! same {
    ($($p:literal),* $(,)?) => { &[$(($p, $p)),*] };
}

const APIS: [Api; 7] = [
    Api {
        name: "node",
        level: Level::Node,
        procs: same!(
            "get_cpu_count",
            "get_cpu_affinity",
            "set_cpu_affinity",
            "get_process_info",
            "get_process_stats",
            "set_process_stats_monitoring",
            "trigger_gc",
            "start_manhole",
            "stop_manhole",
            "get_manhole",
            "get_status",
            "get_system_stats",
            "shutdown",
            "get_worker_log",
            "get_workers",
            "get_worker",
            "start_worker",
            "stop_worker",
        ),
    },
    Api {
        name: "worker",
        level: Level::Worker,
        procs: same!(
            "shutdown",
            "get_status",
            "get_pythonpath",
            "add_pythonpath",
            "get_cpu_affinity",
            "set_cpu_affinity",
            "get_profilers",
            "start_profiler",
            "get_profile",
            "get_process_info",
            "get_process_stats",
            "set_process_stats_monitoring",
        ),
    },
    Api {
        name: "router",
        level: Level::Worker,
        procs: same!(
            "get_router_realms",
            "get_router_realm",
            "get_router_realm_stats",
            "get_router_realm_by_name",
            "start_router_realm",
            "stop_router_realm",
            "get_router_realm_roles",
            "get_router_realm_role",
            "start_router_realm_role",
            "stop_router_realm_role",
            "get_router_transports",
            "get_router_transport",
            "start_router_transport",
            "stop_router_transport",
            "get_web_transport_services",
            "get_web_transport_service",
            "start_web_transport_service",
            "stop_web_transport_service",
            "get_router_components",
            "get_router_component",
            "start_router_component",
            "stop_router_component",
            "get_router_realm_links",
            "get_router_realm_link",
            "start_router_realm_link",
            "stop_router_realm_link",
        ),
    },
    Api {
        name: "container",
        level: Level::Worker,
        procs: same!(
            "get_components",
            "get_component",
            "start_component",
            "stop_component"
        ),
    },
    Api {
        name: "proxy",
        level: Level::Worker,
        procs: same!(
            "get_proxy_transports",
            "get_proxy_transport",
            "start_proxy_transport",
            "stop_proxy_transport",
            "get_web_transport_services",
            "get_web_transport_service",
            "start_web_transport_service",
            "stop_web_transport_service",
            "get_proxy_routes",
            "get_proxy_realm_route",
            "list_proxy_realm_routes",
            "start_proxy_realm_route",
            "stop_proxy_realm_route",
            "get_proxy_connections",
            "get_proxy_connection",
            "start_proxy_connection",
            "stop_proxy_connection",
        ),
    },
    Api {
        name: "tracing",
        level: Level::Worker,
        procs: same!(
            "get_traces",
            "get_trace",
            "start_trace",
            "stop_trace",
            "get_trace_data"
        ),
    },
    Api {
        name: "docker",
        level: Level::Node,
        procs: &[
            ("get_info", "get_docker_info"),
            ("get_ping", "get_docker_ping"),
            ("get_version", "get_docker_version"),
            ("get_df", "get_docker_df"),
            ("get_containers", "get_docker_containers"),
            ("get_container", "get_docker_container"),
            ("get_images", "get_docker_images"),
            ("get_image", "get_docker_image"),
            ("fs_open", "fs_docker_open"),
            ("fs_get", "fs_docker_get"),
            ("fs_put", "fs_docker_put"),
            ("create", "create_docker_container"),
            ("start", "start_docker_container"),
            ("stop", "stop_docker_container"),
            ("restart", "restart_docker_container"),
            ("pause", "pause_docker_container"),
            ("unpause", "unpause_docker_container"),
            ("destroy", "destroy_docker_container"),
            ("delete_image", "delete_docker_image"),
            ("prune_images", "prune_docker_images"),
            ("request_tty", "request_docker_tty"),
            ("watch", "watch_docker_container"),
            ("shell", "shell_docker_container"),
            ("backlog", "backlog_docker_container"),
            ("keystroke", "keystroke_docker_container"),
        ],
    },
];

pub const REALM_META_PREFIX: &str = "crossbarfabriccenter.remote.realm.meta.";

/// Users and guests may only look; changing a node takes owner or admin.
fn may_call(role: Option<&str>, remote_name: &str) -> Result<(), CallError> {
    let read_only = ["get_", "list_"].iter().any(|p| remote_name.starts_with(p));
    match role {
        Some("owner" | "admin") => Ok(()),
        Some("user" | "guest") if read_only => Ok(()),
        role => Err(CallError::new(
            NOT_AUTHORIZED,
            format!("role {role:?} may not call {remote_name} on nodes"),
        )),
    }
}

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

/// The leading string arguments `names` (positional or keyword), and whether the rest of
/// the positional arguments start after them.
fn split_args(
    payload: &Payload,
    n: usize,
    names: &[&str],
) -> Result<(Vec<String>, bool), CallError> {
    let mut ids = Vec::with_capacity(n);
    let args = positional_args(payload);
    let positional = args.len() >= n;
    for (i, name) in names.iter().enumerate().take(n) {
        let v = if positional {
            args.get(i)
        } else {
            payload.kwargs.as_ref().and_then(|k| k.get(*name))
        };
        match v.and_then(Value::as_str) {
            Some(s) => ids.push(s.to_owned()),
            None => {
                return Err(CallError::new(
                    INVALID_ARGUMENT,
                    format!("{name} (a string) is required as argument {i}"),
                ));
            }
        }
    }
    Ok((ids, positional))
}

/// Arguments after the addressing ones, and keyword arguments without the addressing ones
/// and without `details` (which the reference's forwarder drops).
fn forwarded_payload(payload: &Payload, skip: usize, positional: bool) -> Payload {
    let args: Vec<Value> = if positional {
        positional_args(payload)
            .iter()
            .skip(skip)
            .cloned()
            .collect()
    } else {
        positional_args(payload).to_vec()
    };
    let kwargs = payload.kwargs.as_ref().map(|k| {
        k.iter()
            .filter(|(name, _)| {
                name.as_str() != "details"
                    && (positional
                        || !["node_oid", "node_id", "worker_id", "realm_id"]
                            .contains(&name.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<crate::wamp::Dict>()
    });
    Payload {
        args: Some(Value::List(args)),
        kwargs: kwargs.filter(|k| !k.is_empty()),
    }
}

/// The procedure a node registers for one of its workers.
fn worker_procedure(authid: &str, worker_id: &str, node_name: &str) -> String {
    format!("crossbarfabriccenter.node.{authid}.worker.{worker_id}.{node_name}")
}

fn positional_args(payload: &Payload) -> &[Value] {
    match &payload.args {
        Some(Value::List(l)) => l,
        _ => &[],
    }
}

/// Serves `remote.*` calls in the dealer when the node's session is on this replica: the
/// call goes to the node's procedure directly and its answer straight back. Everything else
/// (errors to report, a node held by another replica) returns `None`, and the forwarder's
/// registered handlers take the call.
pub struct DirectRoutes {
    forwarder: Forwarder,
    /// `crossbarfabriccenter.remote.<api>.<name>` → (level, remote name, node-side name).
    procs: HashMap<String, (Level, &'static str, &'static str)>,
}

impl CallRetarget for DirectRoutes {
    fn prefix(&self) -> &str {
        "crossbarfabriccenter.remote."
    }

    fn retarget(
        &self,
        procedure: &str,
        caller_authrole: &str,
        payload: &Payload,
    ) -> Option<(String, Payload)> {
        // A redb read transaction does not wait for writers, so a stale cache is refreshed
        // here (once per applied index) rather than sending the call the slow way.
        let paired = self.forwarder.paired_nodes().ok()?;
        let role = Some(caller_authrole);
        let target = if procedure.starts_with(REALM_META_PREFIX) {
            self.forwarder
                .meta_target(&paired, procedure, role, payload)
        } else {
            let &(level, remote_name, node_name) = self.procs.get(procedure)?;
            self.forwarder
                .target(&paired, level, remote_name, node_name, role, payload)
        };
        target
            .ok()
            .map(|(_, procedure, payload)| (procedure, payload))
    }
}

/// Worker and realm ids become URI components: they must be one.
fn check_id(id: &str, what: &str) -> Result<(), CallError> {
    if id.is_empty() || id.contains(['.', '#', ' ']) {
        return Err(bad_argument(format!(
            "{what} {id:?} cannot be part of a URI"
        )));
    }
    Ok(())
}

/// The reference's extraction pattern for authids and worker ids: `[a-z0-9][a-z0-9_\-]*`.
fn is_component(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Node-level event names and the remote API they belong to.
fn node_topic_api(t: &str) -> Option<&'static str> {
    const NODE: [&str; 15] = [
        "on_node_starting",
        "on_node_started",
        "on_node_heartbeat",
        "on_node_stopping",
        "on_node_stopped",
        "on_router_starting",
        "on_router_started",
        "on_container_starting",
        "on_container_started",
        "on_guest_starting",
        "on_guest_started",
        "on_proxy_starting",
        "on_proxy_started",
        "on_xbrmm_starting",
        "on_xbrmm_started",
    ];
    const DOCKER: [&str; 10] = [
        "on_container_create",
        "on_container_start",
        "on_container_attach",
        "on_container_commit",
        "on_container_kill",
        "on_container_die",
        "on_container_stop",
        "on_container_destroy",
        "on_container_pause",
        "on_container_unpause",
    ];
    if NODE.contains(&t) {
        Some("node")
    } else if DOCKER.contains(&t) || t.starts_with("on_image_") || t.starts_with("on_docker_image_")
    {
        Some("docker")
    } else {
        None
    }
}

/// Worker-level event names (as the node publishes them) → (remote API, remote name). The
/// node's names for log lines, realms and components differ from the reference's remote
/// names, which therefore never fired there; here they are mapped.
fn worker_topic_api(t: &str) -> Option<(&'static str, String)> {
    let router_kinds = [
        "on_router_realm_",
        "on_router_realm_role_",
        "on_router_transport_",
        "on_web_transport_service_",
        "on_router_component_",
    ];
    let phase = |s: &str| matches!(s, "starting" | "started" | "stopping" | "stopped");
    if t == "on_log" || t == "on_worker_log" {
        return Some(("worker", "on_worker_log".into()));
    }
    if t == "on_profile_started" || t == "on_profile_finished" {
        return Some(("worker", t.into()));
    }
    if let Some(p) = t.strip_prefix("on_realm_")
        && phase(p)
    {
        return Some(("router", format!("on_router_realm_{p}")));
    }
    for k in router_kinds {
        if let Some(p) = t.strip_prefix(k)
            && phase(p)
        {
            return Some(("router", t.into()));
        }
    }
    if let Some(p) = t.strip_prefix("on_container_component_")
        && phase(p)
    {
        return Some(("container", t.into()));
    }
    if let Some(p) = t.strip_prefix("on_component_") {
        let p = match p {
            "start" | "started" => "started",
            "stop" | "stopped" => "stopped",
            _ => return None,
        };
        return Some(("container", format!("on_container_component_{p}")));
    }
    if let Some(p) = t.strip_prefix("on_proxy_transport_")
        && phase(p)
    {
        return Some(("proxy", t.into()));
    }
    if matches!(t, "on_trace_started" | "on_trace_stopped" | "on_trace_data") {
        return Some(("tracing", t.into()));
    }
    None
}

/// The remote topic and arguments for a node event, if it has one.
fn remote_topic(topic: &str, args: &[Value]) -> Option<(String, Vec<Value>)> {
    let rest = topic.strip_prefix("crossbarfabriccenter.node.")?;
    let (authid, tail) = rest.split_once('.')?;
    if !is_component(authid) {
        return None;
    }
    let with = |prefix: Vec<Value>| prefix.into_iter().chain(args.iter().cloned()).collect();
    if !tail.contains('.') {
        let api = node_topic_api(tail)?;
        return Some((
            format!("crossbarfabriccenter.remote.{api}.{tail}"),
            with(vec![authid.into()]),
        ));
    }
    let tail = tail.strip_prefix("worker.")?;
    let (worker, t) = tail.split_once('.')?;
    if !is_component(worker) {
        return None;
    }
    if let Some(realm_tail) = t.strip_prefix("realm.") {
        let (realm_id, meta) = realm_tail.split_once(".root.")?;
        return Some((
            format!("{REALM_META_PREFIX}{}", meta.replace('-', ".")),
            with(vec![authid.into(), worker.into(), realm_id.into()]),
        ));
    }
    if t.contains('.') {
        return None;
    }
    let (api, name) = worker_topic_api(t)?;
    Some((
        format!("crossbarfabriccenter.remote.{api}.{name}"),
        with(vec![authid.into(), worker.into()]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_events_map_to_remote_topics() {
        let args = vec![Value::from("x")];
        let (t, a) = remote_topic("crossbarfabriccenter.node.node1.on_router_started", &args)
            .expect("node-level");
        assert_eq!(t, "crossbarfabriccenter.remote.node.on_router_started");
        assert_eq!(a, vec![Value::from("node1"), Value::from("x")]);
        let (t, a) = remote_topic(
            "crossbarfabriccenter.node.node1.worker.rtr1.on_router_transport_started",
            &args,
        )
        .expect("worker-level");
        assert_eq!(
            t,
            "crossbarfabriccenter.remote.router.on_router_transport_started"
        );
        assert_eq!(a[..2], [Value::from("node1"), Value::from("rtr1")]);
        let (t, a) = remote_topic(
            "crossbarfabriccenter.node.node1.worker.rtr1.realm.rlm2.root.wamp-session-on_leave",
            &args,
        )
        .expect("realm meta");
        assert_eq!(
            t,
            "crossbarfabriccenter.remote.realm.meta.wamp.session.on_leave"
        );
        assert_eq!(a.len(), 4);
        let (t, _) = remote_topic("crossbarfabriccenter.node.node1.worker.rtr1.on_log", &args)
            .expect("log lines");
        assert_eq!(t, "crossbarfabriccenter.remote.worker.on_worker_log");
        let (t, _) = remote_topic(
            "crossbarfabriccenter.node.node1.worker.rtr1.on_realm_started",
            &args,
        )
        .expect("realm started");
        assert_eq!(
            t,
            "crossbarfabriccenter.remote.router.on_router_realm_started"
        );
    }

    #[test]
    fn ids_outside_the_pattern_and_unknown_events_are_not_republished() {
        assert!(remote_topic("crossbarfabriccenter.node.Node1.on_router_started", &[]).is_none());
        assert!(remote_topic("crossbarfabriccenter.node.node1.on_whatever", &[]).is_none());
        assert!(remote_topic("crossbarfabriccenter.node.on_heartbeat", &[]).is_none());
    }
}
