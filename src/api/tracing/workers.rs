//! What the tracing API does on one traced worker: find its node, call it through the
//! forwarder, publish events, republish trace data, and the compare-and-set status changes
//! (with the recovery of changes a restart cut short).

use super::*;

impl Tracing {
    /// The paired node a traced worker is on, if it is online; else its `failed` entry
    /// (status "offline", with an error only when the node is not paired at all).
    pub(super) fn online_node(&self, node_id: &str, worker_id: &str) -> Result<Node, Value> {
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
    pub(super) async fn call(
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
    pub(super) async fn running_on(
        &self,
        node: &Node,
        worker: &str,
        id: &str,
    ) -> Result<bool, CallError> {
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
    pub(super) async fn start_on(&self, trace: &Trace, node_id: &str, worker: &str) -> Outcome {
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
    pub(super) async fn stop_on(&self, trace: &Trace, node_id: &str, worker: &str) -> Outcome {
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
    pub(super) async fn data_from(
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
    pub(super) fn publish(&self, trace: &Trace, event: &str, args: Vec<Value>) {
        let options = reader_options(trace);
        self.scope
            .events
            .publish_to(&format!("{EVENTS}{event}"), args, &options);
    }

    /// Trace data is derived on every replica from the node's relayed events: local only.
    pub(super) fn publish_local(&self, trace: &Trace, event: &str, args: Vec<Value>) {
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
    pub(super) fn names_node(&self, node_id: &str, authid: &str) -> bool {
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
    pub(super) async fn transition(
        &self,
        id: &str,
        to: &str,
        rule: StatusRule,
    ) -> Result<Trace, CallError> {
        self.touched.lock().insert(id.to_owned());
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

    pub(super) async fn recover_once(&self) -> Result<(), CallError> {
        let me = self.scope.ctx.replica.id;
        let traces = reader(&self.scope)
            .await?
            .list::<Trace>(&self.scope.key_prefix())?;
        for t in traces {
            let cut_short = matches!(t.status.as_str(), STARTING | STOPPING)
                && t.changed_by == Some(me)
                && !self.touched.lock().contains(&t.trace_id);
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
