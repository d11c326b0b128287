//! The tracing API of a management realm (spec §6.2): traces of the WAMP traffic on router
//! workers of paired nodes, defined once on the master and run on every traced worker
//! (`crossbarfabriccenter.mrealm.{get_traces,get_trace,create_trace,start_trace,stop_trace,
//! delete_trace,get_trace_data}`), with events under `crossbarfabriccenter.mrealm.tracing.`.
//!
//! The reference kept traces in the memory of its one master process. Here the master is
//! a cluster behind a load balancer, so traces are replicated state (`Kind::Trace`, deleted
//! with their management realm): a trace created through one replica is seen, started and
//! stopped through any other. Status changes are compare-and-set commands decided at apply
//! time, so of two concurrent starts (or stops) exactly one wins and the other is refused.
//!
//! Nodes are called like `crossbarfabriccenter.remote.tracing.*` calls them, through the
//! forwarder, which reaches the replica holding each node's session. A worker that fails
//! is reported in `failed` and does not fail the whole call. Trace data a node publishes
//! arrives on the replica holding its session; that replica's backend republishes it for
//! the trace's readers.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;
use uuid::Uuid;

use super::args::str_arg;
use super::errors::{bad_argument, corrupt_record, refusal_uri};
use super::objects::{reader, require_writer};
use super::remote::Forwarder;
use super::scope::Scope;
use super::{handler, to_json, to_value};
use crate::clock::now_ns;
use crate::replica::ProposeError;
use crate::router::internal::{CallError, Event, Handler, Invocation};
use crate::store::model::{Extra, Json, Node, Trace};
use crate::store::{AnyRecord, ApplyError, Command, Kind, StatusRule};
use crate::wamp::{Dict, Payload, Value};

const PREFIX: &str = "crossbarfabriccenter.mrealm.";
const EVENTS: &str = "crossbarfabriccenter.mrealm.tracing.";
/// Node trace data, as the forwarder republishes it: `(node_authid, worker_id, trace_id,
/// period, trace_data)`.
pub const REMOTE_TRACE_DATA: &str = "crossbarfabriccenter.remote.tracing.on_trace_data";

const STOPPED: &str = "stopped";
const STARTING: &str = "starting";
const RUNNING: &str = "running";
const STOPPING: &str = "stopping";
const STOPPING_FAILED: &str = "stopping_failed";

/// The largest `limit` of `get_trace_data` an edge router worker accepts.
const MAX_LIMIT: i64 = 10_000;

pub struct Tracing {
    scope: Arc<Scope>,
    nodes: Forwarder,
    /// When this backend started (ns): a transition of this replica's that is older and
    /// still unfinished was cut short by a restart.
    started_ns: i64,
}

/// What became of one traced worker: its node's answer, or a `failed` entry.
type Outcome = Result<Option<Value>, Value>;

impl Tracing {
    pub fn new(scope: Arc<Scope>, nodes: Forwarder) -> Arc<Tracing> {
        Arc::new(Tracing {
            scope,
            nodes,
            started_ns: now_ns(),
        })
    }

    pub fn handlers(self: &Arc<Self>) -> Vec<(String, Handler)> {
        vec![
            self.route("get_traces", Tracing::get_traces),
            self.route("get_trace", Tracing::get_trace),
            self.route("create_trace", Tracing::create_trace),
            self.route("start_trace", Tracing::start_trace),
            self.route("stop_trace", Tracing::stop_trace),
            self.route("delete_trace", Tracing::delete_trace),
            self.route("get_trace_data", Tracing::get_trace_data),
        ]
    }

    fn route<F, Fut>(self: &Arc<Self>, name: &str, f: F) -> (String, Handler)
    where
        F: Fn(Arc<Tracing>, Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CallError>> + Send + 'static,
    {
        let me = self.clone();
        (
            format!("{PREFIX}{name}"),
            handler(move |inv| f(me.clone(), inv)),
        )
    }

    // ---- procedures --------------------------------------------------------------------

    /// Sorted ids of the traces the caller's role may read.
    async fn get_traces(self: Arc<Self>, inv: Invocation) -> Result<Value, CallError> {
        let r = reader(&self.scope).await?;
        let mut ids: Vec<String> = r
            .list::<Trace>(&self.scope.key_prefix())?
            .into_iter()
            .filter(|t| readable(t, inv.caller_authrole()))
            .map(|t| t.trace_id)
            .collect();
        ids.sort();
        Ok(Value::List(ids.into_iter().map(Value::from).collect()))
    }

    /// The trace, or null when there is none the caller may read (as the reference).
    async fn get_trace(self: Arc<Self>, inv: Invocation) -> Result<Value, CallError> {
        let id = trace_id_arg(&inv)?;
        let r = reader(&self.scope).await?;
        let trace = r.get::<Trace>(&self.scope.key(&id))?;
        Ok(trace
            .filter(|t| readable(t, inv.caller_authrole()))
            .map(|t| wire(&t))
            .unwrap_or(Value::Null))
    }

    async fn create_trace(self: Arc<Self>, inv: Invocation) -> Result<Value, CallError> {
        require_writer(&inv)?;
        let trace = Trace {
            mrealm_oid: self.scope.mrealm_oid,
            trace_id: trace_id_arg(&inv)?,
            traced_workers: traced_workers_arg(&inv)?,
            trace_options: options_arg(&inv)?,
            eligible_reader_roles: roles_arg(&inv, 3, "eligible_reader_roles")?,
            exclude_reader_roles: roles_arg(&inv, 4, "exclude_reader_roles")?,
            status: STOPPED.into(),
            changed: Some(now_ns()),
            changed_by: Some(self.scope.ctx.replica.id),
        };
        self.scope
            .ctx
            .replica
            .propose(Command::Insert {
                record: AnyRecord::Trace(trace.clone()),
            })
            .await
            .map_err(|e| refused(&trace.trace_id, e))?;
        tracing::info!(
            "trace {:?} created in management realm {} over {} worker(s)",
            trace.trace_id,
            self.scope.mrealm_name,
            trace.traced_workers.len()
        );
        // The reference answers and announces an empty dict.
        let created = Value::Dict(Dict::new());
        self.publish(
            &trace,
            "on_trace_created",
            vec![trace.trace_id.clone().into(), created.clone()],
        );
        Ok(created)
    }

    async fn start_trace(self: Arc<Self>, inv: Invocation) -> Result<Value, CallError> {
        require_writer(&inv)?;
        let id = trace_id_arg(&inv)?;
        let trace = self
            .transition(&id, STARTING, StatusRule::StartFrom(vec![STOPPED.into()]))
            .await?;
        self.publish(&trace, "on_trace_starting", vec![id.as_str().into()]);
        let outcomes = join_all(
            trace
                .traced_workers
                .iter()
                .map(|(node, worker)| self.start_on(&trace, node, worker)),
        )
        .await;
        let (started, failed) = split(outcomes);
        tracing::info!(
            "trace {id:?} started on {} worker(s), failed on {}",
            started.len(),
            failed.len()
        );
        let trace = self
            .transition(&id, RUNNING, StatusRule::StartFrom(vec![STARTING.into()]))
            .await?;
        let result = Value::Dict(crate::dict! {"started" => started, "failed" => failed});
        self.publish(&trace, "on_trace_started", vec![id.into(), result.clone()]);
        Ok(result)
    }

    async fn stop_trace(self: Arc<Self>, inv: Invocation) -> Result<Value, CallError> {
        require_writer(&inv)?;
        let id = trace_id_arg(&inv)?;
        let from = vec![RUNNING.into(), STOPPING_FAILED.into()];
        let trace = self
            .transition(&id, STOPPING, StatusRule::StopFrom(from))
            .await?;
        self.publish(&trace, "on_trace_stopping", vec![id.as_str().into()]);
        let outcomes = join_all(
            trace
                .traced_workers
                .iter()
                .map(|(node, worker)| self.stop_on(&trace, node, worker)),
        )
        .await;
        let (stopped, failed) = split(outcomes);
        // Workers that may still be tracing keep the trace stoppable (and deletable).
        let to = if failed.is_empty() {
            STOPPED
        } else {
            STOPPING_FAILED
        };
        tracing::info!(
            "trace {id:?} stopped on {} worker(s), failed on {}: now {to}",
            stopped.len(),
            failed.len()
        );
        let trace = self
            .transition(&id, to, StatusRule::StopFrom(vec![STOPPING.into()]))
            .await?;
        let result = Value::Dict(crate::dict! {"stopped" => stopped, "failed" => failed});
        self.publish(&trace, "on_trace_stopped", vec![id.into(), result.clone()]);
        Ok(result)
    }

    async fn delete_trace(self: Arc<Self>, inv: Invocation) -> Result<Value, CallError> {
        require_writer(&inv)?;
        let id = trace_id_arg(&inv)?;
        // The store refuses unless the trace is stopped or its stop failed.
        let deleted = self
            .scope
            .ctx
            .replica
            .propose(Command::Delete {
                kind: Kind::Trace,
                key: self.scope.key(&id),
                cascade: false,
            })
            .await
            .map_err(|e| refused(&id, e))?;
        let trace = parse(deleted)?;
        tracing::info!(
            "trace {id:?} deleted from management realm {}",
            self.scope.mrealm_name
        );
        let out = Value::Dict(Dict::new());
        self.publish(&trace, "on_trace_deleted", vec![id.into(), out.clone()]);
        Ok(out)
    }

    /// `{node_id: {worker_id: {success, data}}}`, `data` being the node's records or, when
    /// `success` is false, why there are none.
    async fn get_trace_data(self: Arc<Self>, inv: Invocation) -> Result<Value, CallError> {
        let id = trace_id_arg(&inv)?;
        let limit = limit_arg(&inv)?;
        let trace = {
            let r = reader(&self.scope).await?;
            r.get::<Trace>(&self.scope.key(&id))?
                .filter(|t| readable(t, inv.caller_authrole()))
                .ok_or_else(|| no_such_trace(&id))?
        };
        let answers = join_all(
            trace
                .traced_workers
                .iter()
                .map(|(node, worker)| self.data_from(&trace, node, worker, limit)),
        )
        .await;
        let mut out = Dict::new();
        for ((node, worker), (success, data)) in trace.traced_workers.iter().zip(answers) {
            let per_node = out
                .entry(node.clone())
                .or_insert_with(|| Value::Dict(Dict::new()));
            if let Value::Dict(d) = per_node {
                d.insert(
                    worker.clone(),
                    Value::Dict(crate::dict! {"success" => success, "data" => data}),
                );
            }
        }
        Ok(Value::Dict(out))
    }

    // ---- one worker --------------------------------------------------------------------

    /// The paired node a traced worker is on, if it is online; else its `failed` entry
    /// (status "offline", with an error only when the node is not paired at all).
    fn online_node(&self, node_id: &str, worker_id: &str) -> Result<Node, Value> {
        let node = self
            .nodes
            .resolve_node(node_id)
            .map_err(|e| failed(node_id, "offline", worker_id, Some(&e)))?;
        match self.nodes.is_online(&node) {
            Ok(true) => Ok(node),
            Ok(false) => Err(failed(node_id, "offline", worker_id, None)),
            Err(e) => Err(failed(node_id, "offline", worker_id, Some(&e))),
        }
    }

    /// Calls `remote.tracing.<name>(node, worker, *args, **kwargs)`; the first result.
    async fn call(
        &self,
        node: &Node,
        worker_id: &str,
        name: &str,
        args: Vec<Value>,
        kwargs: Option<Dict>,
    ) -> Result<Value, CallError> {
        let payload = Payload {
            args: Some(Value::List(args)),
            kwargs,
        };
        let answer = self
            .nodes
            .call_worker(node, "tracing", name, worker_id, payload)
            .await?;
        Ok(match answer.args {
            Some(Value::List(mut l)) if !l.is_empty() => l.swap_remove(0),
            _ => Value::Null,
        })
    }

    /// Whether the worker runs a trace with this id (a node keeps only running ones).
    async fn running_on(&self, node: &Node, worker: &str, id: &str) -> Result<bool, CallError> {
        let ids = self.call(node, worker, "get_traces", vec![], None).await?;
        let listed = ids
            .as_list()
            .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(id)));
        if !listed {
            return Ok(false);
        }
        let t = self
            .call(node, worker, "get_trace", vec![id.into()], None)
            .await?;
        Ok(matches!(&t, Value::Dict(d) if d.get("status").and_then(Value::as_str) == Some(RUNNING)))
    }

    /// Starts the trace on one worker, first stopping a trace of the same id still running
    /// there from an earlier start, whose data would otherwise mix with the new one's.
    async fn start_on(&self, trace: &Trace, node_id: &str, worker: &str) -> Outcome {
        let node = self.online_node(node_id, worker)?;
        let id = trace.trace_id.as_str();
        let attempt = async {
            if self.running_on(&node, worker, id).await? {
                self.call(&node, worker, "stop_trace", vec![id.into()], None)
                    .await?;
                tracing::info!("trace {id:?}: stopped an orphan on {node_id}/{worker}");
            }
            let options = trace.trace_options.as_ref().map(|o| to_value(o.clone()));
            let kwargs = crate::dict! {"trace_options" => options.unwrap_or(Value::Null)};
            self.call(&node, worker, "start_trace", vec![id.into()], Some(kwargs))
                .await
        };
        match attempt.await {
            Ok(started) => Ok(Some(started)),
            Err(e) => {
                tracing::warn!(
                    "trace {id:?} not started on {node_id}/{worker}: {} {}",
                    e.uri,
                    e.message
                );
                Err(failed(node_id, "online", worker, Some(&e)))
            }
        }
    }

    /// Stops the trace on one worker if it runs there.
    async fn stop_on(&self, trace: &Trace, node_id: &str, worker: &str) -> Outcome {
        let node = self.online_node(node_id, worker)?;
        let id = trace.trace_id.as_str();
        let attempt = async {
            if !self.running_on(&node, worker, id).await? {
                return Ok(None);
            }
            self.call(&node, worker, "stop_trace", vec![id.into()], None)
                .await
                .map(Some)
        };
        attempt.await.map_err(|e| {
            tracing::warn!(
                "trace {id:?} not stopped on {node_id}/{worker}: {} {}",
                e.uri,
                e.message
            );
            failed(node_id, "online", worker, Some(&e))
        })
    }

    /// `(success, data)` of one worker's trace data.
    async fn data_from(
        &self,
        trace: &Trace,
        node_id: &str,
        worker: &str,
        limit: Option<i64>,
    ) -> (bool, Value) {
        let node = match self.online_node(node_id, worker) {
            Ok(n) => n,
            Err(Value::Dict(f)) => {
                let why = f
                    .get("error")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("node {node_id} is not online"));
                return (false, why.into());
            }
            Err(_) => return (false, format!("node {node_id} is not online").into()),
        };
        let kwargs = limit.map(|l| crate::dict! {"limit" => l});
        let args = vec![trace.trace_id.as_str().into(), Value::Int(0)];
        match self
            .call(&node, worker, "get_trace_data", args, kwargs)
            .await
        {
            Ok(data) => (true, data),
            Err(e) => (false, describe(&e).into()),
        }
    }

    // ---- events ------------------------------------------------------------------------

    /// Events about a trace go to the roles that may read it, on every replica.
    fn publish(&self, trace: &Trace, event: &str, args: Vec<Value>) {
        let options = reader_options(trace);
        self.scope
            .events
            .publish_to(&format!("{EVENTS}{event}"), args, &options);
    }

    /// Trace data is derived on every replica from the node's relayed events: local only.
    fn publish_local(&self, trace: &Trace, event: &str, args: Vec<Value>) {
        let options = reader_options(trace);
        self.scope
            .events
            .publish_local_to(&format!("{EVENTS}{event}"), args, &options);
    }

    /// `remote.tracing.on_trace_data (node_authid, worker_id, trace_id, period, data)`:
    /// republished as `mrealm.tracing.on_trace_data` when the worker is one the trace names,
    /// by the node's oid or by its authid (the reference compared only the authid).
    pub fn on_remote_trace_data(&self, ev: &Event) {
        let args = ev.args();
        let (Some(authid), Some(worker), Some(id)) = (
            args.first().and_then(Value::as_str),
            args.get(1).and_then(Value::as_str),
            args.get(2).and_then(Value::as_str),
        ) else {
            tracing::debug!("malformed trace data event ignored");
            return;
        };
        if !valid_trace_id(id) {
            return;
        }
        let trace = match self
            .scope
            .ctx
            .replica
            .reader()
            .and_then(|r| r.get::<Trace>(&self.scope.key(id)))
        {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("trace data for {id:?} dropped: the trace cannot be read: {e}");
                return;
            }
        };
        let Some((node_id, _)) = trace
            .traced_workers
            .iter()
            .find(|(n, w)| w == worker && self.names_node(n, authid))
        else {
            return;
        };
        let period = args.get(3).cloned().unwrap_or_default();
        let data = args.get(4).cloned().unwrap_or_default();
        // The node as the trace names it, so readers can match it with get_trace.
        let out = vec![
            node_id.as_str().into(),
            worker.into(),
            id.into(),
            period,
            data,
        ];
        self.publish_local(&trace, "on_trace_data", out);
    }

    /// Whether a traced node id (an oid or an authid) names the node with `authid`.
    fn names_node(&self, node_id: &str, authid: &str) -> bool {
        node_id == authid
            || (Uuid::parse_str(node_id).is_ok()
                && self
                    .nodes
                    .resolve_node(node_id)
                    .is_ok_and(|n| n.authid.as_deref() == Some(authid)))
    }

    // ---- status ------------------------------------------------------------------------

    /// Moves the trace to `to` if the store finds its status allowed by `rule` when the
    /// change is applied (so concurrent requests on different replicas are ordered).
    async fn transition(&self, id: &str, to: &str, rule: StatusRule) -> Result<Trace, CallError> {
        let mut delta = Extra::new();
        delta.insert("status".into(), Json::from(to));
        delta.insert("changed".into(), Json::from(now_ns()));
        delta.insert("changed_by".into(), Json::from(self.scope.ctx.replica.id));
        let changed = self
            .scope
            .ctx
            .replica
            .propose(Command::Modify {
                kind: Kind::Trace,
                key: self.scope.key(id),
                delta,
                status_rule: Some(rule),
            })
            .await
            .map_err(|e| refused(id, e))?;
        parse(changed)
    }

    /// Starts and stops this replica left half-done when it went down become failed stops:
    /// what runs on the nodes is unknown, and stopping again cleans it up. (A replica that
    /// never comes back leaves its traces where they were.)
    pub async fn recover(self: Arc<Self>) {
        for attempt in 0..6u32 {
            match self.recover_once().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(
                        "unfinished traces of management realm {} not recovered yet: {} {}",
                        self.scope.mrealm_name,
                        e.uri,
                        e.message
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
                }
            }
        }
    }

    async fn recover_once(&self) -> Result<(), CallError> {
        let me = self.scope.ctx.replica.id;
        let traces = reader(&self.scope)
            .await?
            .list::<Trace>(&self.scope.key_prefix())?;
        for t in traces {
            let cut_short = matches!(t.status.as_str(), STARTING | STOPPING)
                && t.changed_by == Some(me)
                && t.changed.is_some_and(|c| c < self.started_ns);
            if !cut_short {
                continue;
            }
            tracing::warn!(
                "trace {:?} was left {} by this replica's earlier run: now {STOPPING_FAILED}",
                t.trace_id,
                t.status
            );
            let rule = StatusRule::StopFrom(vec![t.status.clone()]);
            self.transition(&t.trace_id, STOPPING_FAILED, rule).await?;
        }
        Ok(())
    }
}

// ---- helpers -----------------------------------------------------------------------------

/// The reference's read check: a trace with eligible reader roles is for those roles only,
/// and excluded roles never read it.
fn readable(t: &Trace, role: Option<&str>) -> bool {
    let role = role.unwrap_or_default();
    t.eligible_reader_roles
        .as_ref()
        .is_none_or(|l| l.iter().any(|r| r == role))
        && !t
            .exclude_reader_roles
            .as_ref()
            .is_some_and(|l| l.iter().any(|r| r == role))
}

/// The wire form of `get_trace` (the reference's `Trace.marshal()`).
fn wire(t: &Trace) -> Value {
    to_value(serde_json::json!({
        "trace_id": t.trace_id,
        "traced_workers": t.traced_workers,
        "trace_options": t.trace_options,
        "eligible_reader_roles": t.eligible_reader_roles,
        "exclude_reader_roles": t.exclude_reader_roles,
        "status": t.status,
    }))
}

/// PUBLISH options limiting an event to the trace's readers.
fn reader_options(trace: &Trace) -> Dict {
    let mut options = Dict::new();
    if let Some(roles) = &trace.eligible_reader_roles {
        options.insert("eligible_authrole".into(), names(roles));
    }
    if let Some(roles) = &trace.exclude_reader_roles {
        options.insert("exclude_authrole".into(), names(roles));
    }
    options
}

fn names(roles: &[String]) -> Value {
    Value::List(roles.iter().map(|r| Value::from(r.as_str())).collect())
}

fn parse(json: Json) -> Result<Trace, CallError> {
    serde_json::from_value(json).map_err(corrupt_record)
}

fn no_such_trace(id: &str) -> CallError {
    CallError::new(
        "crossbar.error.no_such_object",
        format!("no trace with ID {id:?}"),
    )
}

/// A refused change, said in terms of the trace.
fn refused(id: &str, e: ProposeError) -> CallError {
    let ProposeError::Refused(refusal) = &e else {
        return CallError::from(e);
    };
    let message = match refusal {
        ApplyError::NoSuchObject { .. } => return no_such_trace(id),
        ApplyError::Duplicate { .. } | ApplyError::AlreadyExists { .. } => {
            format!("a trace with ID {id:?} already exists")
        }
        ApplyError::CannotStart { status, .. } => {
            format!("trace {id:?} cannot be started: it is {status}")
        }
        ApplyError::CannotStop { status, .. } => {
            format!("trace {id:?} cannot be stopped: it is {status}")
        }
        ApplyError::NotStopped { status, .. } => {
            format!("trace {id:?} cannot be deleted: it is {status}")
        }
        _ => return CallError::from(e),
    };
    CallError::new(refusal_uri(refusal), message)
}

/// `{node_id, node_status, worker_id, error?}` of a worker a start or stop did not reach.
fn failed(node_id: &str, node_status: &str, worker_id: &str, error: Option<&CallError>) -> Value {
    let mut d = crate::dict! {
        "node_id" => node_id,
        "node_status" => node_status,
        "worker_id" => worker_id,
    };
    if let Some(e) = error {
        d.insert("error".into(), describe(e).into());
    }
    Value::Dict(d)
}

fn describe(e: &CallError) -> String {
    format!("{}: {}", e.uri, e.message)
}

/// Node answers into the success list (workers without a trace to stop add nothing), and
/// the `failed` entries.
fn split(outcomes: Vec<Outcome>) -> (Vec<Value>, Vec<Value>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for o in outcomes {
        match o {
            Ok(Some(v)) => done.push(v),
            Ok(None) => {}
            Err(f) => failed.push(f),
        }
    }
    (done, failed)
}

/// Trace ids are keys within the realm and go to nodes and events as they are.
fn valid_trace_id(id: &str) -> bool {
    (1..=255).contains(&id.len()) && !id.contains('/') && !id.chars().any(char::is_control)
}

fn trace_id_arg(inv: &Invocation) -> Result<String, CallError> {
    let id = str_arg(inv, 0, "trace_id")?;
    if !valid_trace_id(id) {
        return Err(bad_argument(format!(
            "trace_id {id:?} must be 1..255 characters without '/' or control characters"
        )));
    }
    Ok(id.to_owned())
}

/// Node and worker ids become parts of node procedure URIs.
fn valid_component(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id.contains(['.', '#'])
        && !id.contains(char::is_whitespace)
}

/// `[[node_id, worker_id], …]`, node ids being oids or authids; repeats are dropped.
fn traced_workers_arg(inv: &Invocation) -> Result<Vec<(String, String)>, CallError> {
    let Some(Value::List(items)) = inv.arg(1).or_else(|| inv.kwarg("traced_workers")) else {
        return Err(bad_argument(
            "traced_workers (a list of [node_id, worker_id] pairs) is required",
        ));
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(items.len());
    for item in items {
        let pair = match item {
            Value::List(p) if p.len() == 2 => p[0].as_str().zip(p[1].as_str()),
            _ => None,
        };
        let Some((node, worker)) = pair.filter(|(n, w)| valid_component(n) && valid_component(w))
        else {
            return Err(bad_argument(format!(
                "traced_workers: {:?} is not a [node_id, worker_id] pair of ids",
                to_json(item)
            )));
        };
        let pair = (node.to_owned(), worker.to_owned());
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    Ok(out)
}

/// Optional trace options: a dict or null. The node checks what they say.
fn options_arg(inv: &Invocation) -> Result<Option<Json>, CallError> {
    match inv.arg(2).or_else(|| inv.kwarg("trace_options")) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Dict(_)) => Ok(Some(to_json(v))),
        Some(_) => Err(bad_argument("trace_options must be a dict")),
    }
}

/// An optional list of role names; an empty list restricts nothing, as in the reference.
fn roles_arg(inv: &Invocation, i: usize, name: &str) -> Result<Option<Vec<String>>, CallError> {
    let items = match inv.arg(i).or_else(|| inv.kwarg(name)) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::List(l)) => l,
        Some(_) => return Err(bad_argument(format!("{name} must be a list of role names"))),
    };
    let mut roles: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(r) if !r.is_empty() => {
                if !roles.iter().any(|x| x == r) {
                    roles.push(r.to_owned());
                }
            }
            _ => {
                return Err(bad_argument(format!(
                    "{name}: {:?} is not a role name",
                    to_json(item)
                )));
            }
        }
    }
    Ok((!roles.is_empty()).then_some(roles))
}

/// `limit` of `get_trace_data`: absent (the node's default) or 1..=10000.
fn limit_arg(inv: &Invocation) -> Result<Option<i64>, CallError> {
    match inv.arg(1).or_else(|| inv.kwarg("limit")) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .map(Some)
            .ok_or_else(|| bad_argument(format!("limit must be an integer 1..{MAX_LIMIT}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(eligible: Option<&[&str]>, exclude: Option<&[&str]>) -> Trace {
        let roles = |l: Option<&[&str]>| l.map(|l| l.iter().map(|r| r.to_string()).collect());
        Trace {
            mrealm_oid: Uuid::nil(),
            trace_id: "t1".into(),
            traced_workers: vec![],
            trace_options: None,
            eligible_reader_roles: roles(eligible),
            exclude_reader_roles: roles(exclude),
            status: STOPPED.into(),
            changed: None,
            changed_by: None,
        }
    }

    fn inv(args: Vec<Value>) -> Invocation {
        Invocation {
            procedure: "p".into(),
            payload: Payload {
                args: Some(Value::List(args)),
                kwargs: None,
            },
            details: Dict::new(),
        }
    }

    #[test]
    fn reader_roles() {
        let open = trace(None, None);
        assert!(readable(&open, Some("public")) && readable(&open, None));
        let owners = trace(Some(&["owner"]), None);
        assert!(readable(&owners, Some("owner")));
        assert!(!readable(&owners, Some("guest")));
        assert!(!readable(&owners, None));
        let no_guests = trace(None, Some(&["guest"]));
        assert!(readable(&no_guests, Some("owner")));
        assert!(!readable(&no_guests, Some("guest")));
    }

    #[test]
    fn traced_workers_are_pairs_of_ids() {
        let pair = |n: &str, w: &str| Value::List(vec![n.into(), w.into()]);
        let got = traced_workers_arg(&inv(vec![
            "t".into(),
            Value::List(vec![
                pair("node1", "rtr1"),
                pair("node1", "rtr1"),
                pair("n", "w"),
            ]),
        ]))
        .unwrap();
        assert_eq!(
            got,
            vec![("node1".into(), "rtr1".into()), ("n".into(), "w".into())]
        );
        for bad in [
            Value::from("node1"),
            Value::List(vec![Value::from("node1")]),
            Value::List(vec![pair("node1", "a.b")]),
            Value::List(vec![pair("", "rtr1")]),
            Value::List(vec![Value::List(vec!["n".into(), Value::Int(1)])]),
        ] {
            let e = traced_workers_arg(&inv(vec!["t".into(), bad.clone()])).unwrap_err();
            assert_eq!(e.uri, crate::wamp::errors::INVALID_ARGUMENT, "{bad:?}");
        }
    }

    #[test]
    fn role_lists() {
        let roles = |v: Value| roles_arg(&inv(vec![v]), 0, "roles");
        assert_eq!(roles(Value::Null).unwrap(), None);
        assert_eq!(roles(Value::List(vec![])).unwrap(), None);
        assert_eq!(
            roles(Value::List(vec!["owner".into(), "owner".into()])).unwrap(),
            Some(vec!["owner".to_string()])
        );
        assert!(roles("owner".into()).is_err());
        assert!(roles(Value::List(vec![Value::Int(1)])).is_err());
        assert!(roles(Value::List(vec!["".into()])).is_err());
    }

    #[test]
    fn trace_ids_and_limits() {
        assert!(valid_trace_id("trace-1.a"));
        assert!(!valid_trace_id(""));
        assert!(!valid_trace_id("a/b"));
        assert!(!valid_trace_id("a\nb"));
        assert_eq!(limit_arg(&inv(vec!["t".into()])).unwrap(), None);
        assert_eq!(
            limit_arg(&inv(vec!["t".into(), Value::Int(5)])).unwrap(),
            Some(5)
        );
        assert!(limit_arg(&inv(vec!["t".into(), Value::Int(0)])).is_err());
        assert!(limit_arg(&inv(vec!["t".into(), "5".into()])).is_err());
    }

    #[test]
    fn failures_carry_the_node_status_and_error() {
        let e = CallError::new("crossbar.error.no_such_worker", "no worker w");
        let f = failed("n", "online", "w", Some(&e));
        assert_eq!(
            to_json(&f),
            serde_json::json!({"node_id": "n", "node_status": "online", "worker_id": "w",
                "error": "crossbar.error.no_such_worker: no worker w"})
        );
        let f = failed("n", "offline", "w", None);
        assert!(to_json(&f).get("error").is_none());
    }
}
