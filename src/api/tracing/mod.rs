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

mod shape;
#[cfg(test)]
mod tests;
mod workers;

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
use shape::*;

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
    /// The traces this process has changed the status of. A trace left starting or stopping
    /// by this replica and not among them was cut short by a restart. (Not told by the wall
    /// clock: a clock stepped back would make this run's own unfinished start look older
    /// than the run, and one stepped ahead would leave a cut-short start unrecovered.)
    touched: parking_lot::Mutex<std::collections::HashSet<String>>,
}

/// What became of one traced worker: its node's answer, or a `failed` entry.
type Outcome = Result<Option<Value>, Value>;

impl Tracing {
    pub fn new(scope: Arc<Scope>, nodes: Forwarder) -> Arc<Tracing> {
        Arc::new(Tracing {
            scope,
            nodes,
            touched: Default::default(),
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
}
