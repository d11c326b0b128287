//! The node management calls the reconcilers make: each through the same routing as
//! `remote.*` (any replica may hold the node's session), each with a timeout, and at most
//! [`PER_NODE`] at a time on one node, so a fleet-wide change never floods a single edge.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::api::remote::Forwarder;
use crate::api::{to_json, to_value};
use crate::router::internal::CallError;
use crate::store::model::{Json, Node};
use crate::wamp::{Payload, Value};

/// Calls in flight on one node at most: the edge's controller handles them one by one
/// anyway, and a slow node must not hold more than a few of the reconcilers' tasks.
const PER_NODE: usize = 4;

/// How long one node call may take. Starting a worker forks a Python process (2–5 s on a
/// loaded machine); anything longer is a node that does not answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The URI a reconciler reports when a node call timed out.
pub const TIMEOUT_URI: &str = "wamp.error.timeout";

/// Error URIs with which the edge says "there is no such thing (running)".
const MISSING: [&str; 4] = [
    "crossbar.error.no_such_worker",
    "crossbar.error.no_such_object",
    "crossbar.error.not_running",
    "wamp.error.no_such_procedure",
];

/// Whether an edge error means the object asked for does not exist (so it is to be
/// started), rather than a failure.
pub fn is_missing(e: &CallError) -> bool {
    MISSING.contains(&e.uri.as_str())
}

#[derive(Clone)]
pub struct NodeOps {
    forwarder: Forwarder,
    slots: Arc<parking_lot::Mutex<HashMap<uuid::Uuid, Arc<Semaphore>>>>,
}

impl NodeOps {
    pub fn new(forwarder: Forwarder) -> NodeOps {
        NodeOps {
            forwarder,
            slots: Default::default(),
        }
    }

    fn slot(&self, node: &Node) -> Arc<Semaphore> {
        self.slots
            .lock()
            .entry(node.oid)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_NODE)))
            .clone()
    }

    /// Calls `crossbarfabriccenter.node.<authid>.<proc>` and returns its first result.
    pub async fn node(&self, node: &Node, proc_: &str, args: Vec<Json>) -> Result<Json, CallError> {
        let authid = node.authid.as_deref().unwrap_or_default();
        self.call(
            node,
            format!("crossbarfabriccenter.node.{authid}.{proc_}"),
            args,
        )
        .await
    }

    /// Calls `crossbarfabriccenter.node.<authid>.worker.<worker>.<proc>`.
    pub async fn worker(
        &self,
        node: &Node,
        worker: &str,
        proc_: &str,
        args: Vec<Json>,
    ) -> Result<Json, CallError> {
        let authid = node.authid.as_deref().unwrap_or_default();
        self.call(
            node,
            format!("crossbarfabriccenter.node.{authid}.worker.{worker}.{proc_}"),
            args,
        )
        .await
    }

    /// [`NodeOps::worker`] with its own timeout.
    pub async fn worker_within(
        &self,
        timeout: Duration,
        node: &Node,
        worker: &str,
        proc_: &str,
        args: Vec<Json>,
    ) -> Result<Json, CallError> {
        let authid = node.authid.as_deref().unwrap_or_default();
        let procedure = format!("crossbarfabriccenter.node.{authid}.worker.{worker}.{proc_}");
        self.call_within(timeout, node, procedure, args).await
    }

    async fn call(
        &self,
        node: &Node,
        procedure: String,
        args: Vec<Json>,
    ) -> Result<Json, CallError> {
        self.call_within(CALL_TIMEOUT, node, procedure, args).await
    }

    async fn call_within(
        &self,
        timeout: Duration,
        node: &Node,
        procedure: String,
        args: Vec<Json>,
    ) -> Result<Json, CallError> {
        let slot = self.slot(node);
        let _permit = slot
            .acquire()
            .await
            .map_err(|_| CallError::new(TIMEOUT_URI, "node call slots closed"))?;
        let payload = Payload {
            args: Some(Value::List(args.into_iter().map(to_value).collect())),
            kwargs: None,
        };
        let began = std::time::Instant::now();
        let answer = tokio::time::timeout(
            timeout,
            self.forwarder.call(node, procedure.clone(), payload),
        )
        .await
        .map_err(|_| {
            tracing::warn!("orchestration: <{procedure}> did not answer within {timeout:?}");
            CallError::new(
                TIMEOUT_URI,
                format!("<{procedure}> did not answer within {timeout:?}"),
            )
        })?;
        crate::metrics::meters().observe_orchestration_call(
            answer.as_ref().err().map(|e| e.uri.as_str()),
            began.elapsed(),
        );
        tracing::debug!(
            "orchestration: <{procedure}> answered in {:?}: {}",
            began.elapsed(),
            match &answer {
                Ok(_) => "ok",
                Err(e) => e.uri.as_str(),
            }
        );
        let answer = answer?;
        Ok(match answer.args {
            Some(Value::List(mut l)) if !l.is_empty() => to_json(&l.swap_remove(0)),
            _ => Json::Null,
        })
    }

    /// Runs `get`; if the edge says the object is missing, runs `start`. Returns what `get`
    /// or `start` answered and whether it started it.
    pub async fn ensure<G, S, GF, SF>(&self, get: G, start: S) -> Result<(Json, bool), CallError>
    where
        G: FnOnce() -> GF,
        S: FnOnce() -> SF,
        GF: std::future::Future<Output = Result<Json, CallError>>,
        SF: std::future::Future<Output = Result<Json, CallError>>,
    {
        match get().await {
            Ok(found) => Ok((found, false)),
            Err(e) if is_missing(&e) => start().await.map(|s| (s, true)),
            Err(e) => Err(e),
        }
    }
}
