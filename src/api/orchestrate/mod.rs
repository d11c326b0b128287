//! Orchestration: the reconcilers that make the edge nodes run what the started objects of a
//! management realm describe (web clusters' proxy workers, application realms on router
//! workers), and report it in the objects' status.
//!
//! - Desired state is the replicated store; each pass reads it afresh (`desired.rs`).
//! - Reconcilers run on the Raft **leader only**: every replica's backend has an
//!   `Orchestrator`, and it acts only while its replica leads; a new leader takes over where
//!   the store says things are, and a deposed one aborts its passes.
//! - A pass is started by a change (the applied log index moved and the object's desired
//!   state, including which nodes are online, is different) or by the periodic recheck,
//!   which finds drift (a restarted node, a worker stopped by hand). At most one pass per
//!   object runs at a time; node calls are bounded per node and each has a timeout
//!   (`node_ops.rs`); a failure on one node never stops the others.
//! - Every step first asks the node whether the thing exists and starts it only if not, so
//!   a pass repeated (or a new leader's first pass) starts nothing twice.

mod arealm;
mod desired;
mod node_ops;
pub mod plan;
mod status;
mod sweep;
mod teardown;
mod webcluster;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::remote::Forwarder;
use super::scope::Scope;
use crate::router::internal::CallError;
use crate::store::Kind;
use crate::store::model::{Json, Node};
pub use node_ops::NodeOps;
use status::Report;
pub use webcluster::DEFAULT_PORT as DEFAULT_WEB_PORT;

/// How often the loop looks for work.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How often an unchanged started object is checked against its nodes (the reference
/// ticks every 10 s).
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// How often the node sweep looks for workers no object wants any more (`sweep.rs`).
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A failed pass is tried again this soon.
const RETRY_AFTER: Duration = Duration::from_secs(1);

const ACTIVE: [&str; 3] = ["STARTING", "RUNNING", "DEGRADED"];

/// The three kinds of object a reconciler runs for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Arealm,
    WebCluster,
    RouterCluster,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Arealm => "arealm",
            Target::WebCluster => "webcluster",
            Target::RouterCluster => "routercluster",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Target::Arealm => Kind::ApplicationRealm,
            Target::WebCluster => Kind::WebCluster,
            Target::RouterCluster => Kind::RouterCluster,
        }
    }

    /// (event prefix, event name) of `on_<name>_started` and the like.
    fn events(self) -> (&'static str, &'static str) {
        match self {
            Target::Arealm => ("crossbarfabriccenter.mrealm.arealm.", "arealm"),
            Target::WebCluster => ("crossbarfabriccenter.mrealm.webcluster.", "webcluster"),
            Target::RouterCluster => (
                "crossbarfabriccenter.mrealm.routercluster.",
                "routercluster",
            ),
        }
    }
}

/// What the loop remembers of an object between passes.
#[derive(Default)]
struct Tracked {
    task: Option<JoinHandle<()>>,
    /// Hash of the desired state the last pass worked from.
    fingerprint: u64,
    last_pass: Option<Instant>,
    /// Whether the last pass left something undone.
    failed: bool,
    /// Failed passes in a row, since the object last changed status.
    failures: u32,
    /// The status the last pass started from.
    status: String,
}

pub struct Orchestrator {
    scope: Arc<Scope>,
    ops: NodeOps,
    tracked: parking_lot::Mutex<HashMap<(Target, Uuid), Tracked>>,
    /// The running sweep and when the last one started.
    sweeping: parking_lot::Mutex<(Option<JoinHandle<()>>, Option<Instant>)>,
}

impl Orchestrator {
    pub fn new(scope: Arc<Scope>, forwarder: Forwarder) -> Arc<Orchestrator> {
        Arc::new(Orchestrator {
            scope,
            ops: NodeOps::new(forwarder),
            tracked: Default::default(),
            sweeping: Default::default(),
        })
    }

    /// Runs until `stopped` says so (the management realm went away).
    pub fn spawn(self: &Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut look = tokio::time::interval(LOOK_EVERY);
            look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen_applied = None;
            loop {
                tokio::select! {
                    _ = look.tick() => {}
                    changed = stopped.changed() => {
                        if changed.is_err() || *stopped.borrow() {
                            me.abort_all();
                            return;
                        }
                    }
                }
                if !me.scope.ctx.replica.is_leader() {
                    me.abort_all();
                    seen_applied = None;
                    continue;
                }
                let applied = me.applied();
                let moved = applied != seen_applied;
                seen_applied = applied;
                if let Err(e) = me.schedule(moved) {
                    tracing::warn!("orchestration of {}: {e:?}", me.scope.mrealm_name);
                }
                me.schedule_sweep();
            }
        });
    }

    fn applied(&self) -> Option<u64> {
        self.scope
            .ctx
            .replica
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
    }

    fn schedule_sweep(self: &Arc<Self>) {
        let mut sweeping = self.sweeping.lock();
        let busy = sweeping.0.as_ref().is_some_and(|h| !h.is_finished());
        let due = sweeping.1.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
        if busy || !due {
            return;
        }
        let me = self.clone();
        sweeping.1 = Some(Instant::now());
        sweeping.0 = Some(tokio::spawn(async move {
            if let Err(e) = me.sweep().await {
                tracing::warn!("sweep of {}: {} {}", me.scope.mrealm_name, e.uri, e.message);
            }
        }));
    }

    fn abort_all(&self) {
        {
            let mut sweeping = self.sweeping.lock();
            if let Some(h) = sweeping.0.take() {
                h.abort();
            }
            sweeping.1 = None;
        }
        let mut tracked = self.tracked.lock();
        for t in tracked.values_mut() {
            if let Some(task) = t.task.take() {
                task.abort();
            }
        }
        tracked.clear();
    }

    /// Starts a pass for every started object that needs one.
    fn schedule(self: &Arc<Self>, moved: bool) -> Result<(), CallError> {
        let r = self.scope.ctx.replica.reader()?;
        let m = self.scope.mrealm_oid;
        let mut wanted = Vec::new();
        for target in [Target::RouterCluster, Target::WebCluster, Target::Arealm] {
            for (oid, _) in desired::active(&r, &m, target.kind())? {
                wanted.push((target, oid));
            }
        }
        let mut tracked = self.tracked.lock();
        tracked.retain(|k, t| {
            let keep = wanted.contains(k) || t.task.as_ref().is_some_and(|h| !h.is_finished());
            if !keep && let Some(h) = t.task.take() {
                h.abort();
            }
            keep
        });
        for key in wanted {
            let t = tracked.entry(key).or_default();
            if t.task.as_ref().is_some_and(|h| !h.is_finished()) {
                continue;
            }
            let due = match t.last_pass {
                None => true,
                Some(at) => {
                    let wait = if t.failed { RETRY_AFTER } else { RECHECK_EVERY };
                    at.elapsed() >= wait
                }
            };
            // Only a moved log can change the desired state; its fingerprint says whether
            // it did for this object.
            let changed = moved && self.fingerprint(&r, key)? != t.fingerprint;
            if !(due || changed) {
                continue;
            }
            let me = self.clone();
            t.task = Some(tokio::spawn(async move { me.pass(key).await }));
        }
        Ok(())
    }

    /// A hash of everything a pass of this object reads.
    fn fingerprint(
        &self,
        r: &crate::store::Reader,
        (target, oid): (Target, Uuid),
    ) -> Result<u64, CallError> {
        let m = &self.scope.mrealm_oid;
        let text = match target {
            Target::Arealm => format!("{:?}", desired::arealm(r, m, &oid)?),
            Target::WebCluster => format!("{:?}", desired::webcluster(r, m, &oid)?),
            Target::RouterCluster => format!("{:?}", desired::routercluster(r, m, &oid)?),
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Ok(h.finish())
    }

    async fn pass(self: Arc<Self>, key: (Target, Uuid)) {
        let outcome = self.pass_once(key).await;
        let failed = match &outcome {
            Ok(failed) => *failed,
            Err(e) => {
                tracing::warn!(
                    "orchestration of {:?} {}: {} {}",
                    key.0,
                    key.1,
                    e.uri,
                    e.message
                );
                true
            }
        };
        let fingerprint = self
            .scope
            .ctx
            .replica
            .reader()
            .ok()
            .and_then(|r| self.fingerprint(&r, key).ok())
            .unwrap_or_default();
        let mut tracked = self.tracked.lock();
        if let Some(t) = tracked.get_mut(&key) {
            t.last_pass = Some(Instant::now());
            t.failed = failed;
            t.fingerprint = fingerprint;
        }
    }

    /// Makes every tracked object of `target` due for a pass at the next look: after
    /// router workers were stopped, the other realms on them restart them at once rather
    /// than at their next recheck.
    fn recheck(&self, target: Target) {
        for ((t, _), tracked) in self.tracked.lock().iter_mut() {
            if *t == target {
                tracked.last_pass = None;
            }
        }
    }

    fn bump_failures(&self, key: (Target, Uuid), status: &str, failed: bool) -> u32 {
        let mut tracked = self.tracked.lock();
        let t = tracked.entry(key).or_default();
        if t.status != status {
            // A new start (or stop) begins with a clean slate.
            t.failures = 0;
            t.status = status.to_owned();
        }
        t.failures = if failed { t.failures + 1 } else { 0 };
        t.failures
    }

    /// One pass; whether it left something undone.
    async fn pass_once(&self, key: (Target, Uuid)) -> Result<bool, CallError> {
        let (target, oid) = key;
        let s = &self.scope;
        let m = &s.mrealm_oid;
        let store_key = s.key(oid);
        let (current, stopping) = {
            let r = s.ctx.replica.reader()?;
            let Some(current) = r.get_json(target.kind(), &store_key)? else {
                return Ok(false);
            };
            let status = current.get("status").and_then(Json::as_str).unwrap_or("");
            (current.clone(), status == "STOPPING")
        };
        let report = {
            let r = s.ctx.replica.reader()?;
            match target {
                Target::Arealm => {
                    let Some(plan) = desired::arealm(&r, m, &oid)? else {
                        return Ok(false);
                    };
                    drop(r);
                    if stopping {
                        self.arealm_teardown(&plan).await
                    } else {
                        self.arealm_pass(&plan).await
                    }
                }
                Target::WebCluster => {
                    let Some(plan) = desired::webcluster(&r, m, &oid)? else {
                        return Ok(false);
                    };
                    drop(r);
                    if stopping {
                        self.webcluster_teardown(&plan).await
                    } else {
                        self.webcluster_pass(&plan).await
                    }
                }
                Target::RouterCluster => {
                    let Some(members) = desired::routercluster(&r, m, &oid)? else {
                        return Ok(false);
                    };
                    let mut report = Report::default();
                    if !stopping {
                        for mb in &members {
                            report.node(&mb.node.oid, mb.authid(), mb.online);
                        }
                        if members.is_empty() {
                            report
                                .problems
                                .push("the router cluster has no member nodes".into());
                        }
                    }
                    report
                }
            }
        };
        if !s.ctx.replica.is_leader() {
            return Ok(false);
        }
        let failed = report.any_failed();
        crate::metrics::meters()
            .count_orchestration_pass(target.label(), !(failed || report.any_offline()));
        let now = current.get("status").and_then(Json::as_str).unwrap_or("");
        let failures = self.bump_failures(key, now, failed);
        let (status, from): (&str, &[&str]) = if stopping {
            (if failed { "STOPPING" } else { "STOPPED" }, &["STOPPING"])
        } else {
            (status::active_status(now, &report, failures), &ACTIVE)
        };
        match status::write(
            s,
            target.kind(),
            &store_key,
            &current,
            status,
            &report,
            failures,
            from,
            target.events(),
        )
        .await
        {
            Ok(_) => {}
            // The object changed under us (stopped, deleted): the next pass sees it.
            Err(e) if e.uri.starts_with("crossbar.error.cannot_") || e.uri.contains("no_such") => {}
            Err(e) => return Err(e),
        }
        Ok(failed || report.any_offline())
    }

    /// `stop_worker`; a worker already gone is stopped.
    async fn stop_worker(&self, node: &Node, id: &str) -> Result<(), CallError> {
        match self
            .ops
            .node(node, "stop_worker", vec![serde_json::json!(id)])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if node_ops::is_missing(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
