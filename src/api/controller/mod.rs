//! The management realm controller (spec §5.4, §5.5, §6.2): which paired nodes are online,
//! their heartbeats, the liveness probe, `on_node_ready`/`on_node_shutdown`, and the
//! `get_status`/`get_nodes`/`get_node*` procedures.
//!
//! Online means "a presence record exists": the replica that holds a node's session writes
//! it through Raft on join and removes it on leave, so every replica agrees on who is online
//! and publishes the same ready/shutdown events. Heartbeat details are known only to the
//! replica holding the session; other replicas answer `get_node` with them left null.

mod procedures;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use uuid::Uuid;

use super::args::{oid_arg, str_arg};
use super::scope::Scope;
use super::{handler, to_value};
use crate::clock::now_ns;
use crate::router::internal::{CallError, Caller, Event, Handler};
use crate::store::model::{Node, Presence};
use crate::store::{Command, Index, StoreError};
use crate::wamp::{Dict, Id, Payload, Value};

/// The pause before a presence write that failed (no quorum, a leader change) is tried again.
const PRESENCE_RETRY: Duration = Duration::from_secs(1);

/// `Node.last_activity` codes of the reference.
const ACTIVITY_CREATED: u8 = 1;
const ACTIVITY_READY: u8 = 3;
const ACTIVITY_HEARTBEAT: u8 = 4;
const ACTIVITY_CHECK: u8 = 5;

/// Worker types a heartbeat may count (spec §5.4).
const WORKER_TYPES: [&str; 9] = [
    "controller",
    "router",
    "container",
    "guest",
    "proxy",
    "hostmonitor",
    "xbrmm",
    "xbr_marketmaker",
    "marketplace",
];

pub const PROBE_PERIOD: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Consecutive probes a connected node may leave unanswered before its session is closed.
const PROBE_FAILURES_TOLERATED: u32 = 3;
pub const TICK_PERIOD: Duration = Duration::from_secs(5);

/// A node session this replica holds.
struct LocalNode {
    oid: Uuid,
    session: Id,
    joined_ns: i64,
    /// The presence record of this very session has been applied.
    confirmed: bool,
    /// A presence write is under way.
    proposing: bool,
    probe_failures: u32,
}

/// What heartbeats and probes told this replica about a node.
#[derive(Default, Clone)]
struct Activity {
    last_active: i64,
    last_activity: u8,
    workers: Option<Value>,
    counter: Option<i64>,
    time: Option<i64>,
}

#[derive(Default)]
struct Tracked {
    /// By authid.
    local: HashMap<String, LocalNode>,
    activity: HashMap<Uuid, Activity>,
    /// Nodes online at the last look at the presence records, with their authids.
    online: HashMap<Uuid, String>,
    /// The first look only learns; it does not announce what was already online.
    primed: bool,
}

pub struct Controller {
    scope: Arc<Scope>,
    caller: Caller,
    started: Instant,
    started_iso: String,
    tick: AtomicU64,
    tracked: Mutex<Tracked>,
}

impl Controller {
    pub fn new(scope: Arc<Scope>, caller: Caller) -> Arc<Controller> {
        Arc::new(Controller {
            scope,
            caller,
            started: Instant::now(),
            started_iso: crate::clock::now_iso(),
            tick: AtomicU64::new(0),
            tracked: Mutex::new(Tracked::default()),
        })
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    fn realm(&self) -> &Arc<crate::router::realm::Realm> {
        self.scope.events.realm()
    }

    fn node_by_authid(&self, authid: &str) -> Result<Option<Node>, StoreError> {
        let r = self.scope.ctx.replica.reader()?;
        r.lookup(
            Index::NodeByAuthid,
            &format!("{}/{authid}", self.scope.mrealm_oid),
        )
    }

    /// `wamp.session.on_join`: a node session replaces any older one of the same node and
    /// its presence is written.
    pub fn on_session_join(self: &Arc<Self>, ev: Event) {
        let Some(Value::Dict(d)) = ev.args().first() else {
            return;
        };
        if d.get("authrole").and_then(Value::as_str) != Some("node") {
            return;
        }
        let (Some(authid), Some(session)) = (
            d.get("authid").and_then(Value::as_str),
            d.get("session").and_then(Value::as_u64),
        ) else {
            return;
        };
        let node = match self.node_by_authid(authid) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("node {authid} joined, but its record cannot be read: {e}");
                return;
            }
        };
        let older = {
            let mut t = self.tracked.lock();
            let older = t.local.insert(
                authid.to_owned(),
                LocalNode {
                    oid: node.oid,
                    session,
                    joined_ns: now_ns(),
                    confirmed: false,
                    proposing: false,
                    probe_failures: 0,
                },
            );
            let a = t.activity.entry(node.oid).or_default();
            a.last_active = now_ns();
            a.last_activity = ACTIVITY_CREATED;
            older
        };
        if let Some(old) = older.filter(|o| o.session != session) {
            tracing::info!(
                "node {authid} reconnected: closing its older session {}",
                old.session
            );
            self.realm().kill_session(
                old.session,
                "wamp.close.replaced",
                "the node connected again; this older session is replaced",
            );
        }
        tracing::info!(
            "node {authid} ({}) joined management realm {}",
            node.oid,
            self.scope.mrealm_name
        );
        self.write_presence(authid);
    }

    /// Proposes the presence of the local session of `authid` unless one is under way.
    fn write_presence(self: &Arc<Self>, authid: &str) {
        let presence = {
            let mut t = self.tracked.lock();
            let Some(l) = t.local.get_mut(authid) else {
                return;
            };
            if l.confirmed || l.proposing {
                return;
            }
            l.proposing = true;
            Presence {
                node_oid: l.oid,
                mrealm_oid: self.scope.mrealm_oid,
                authid: authid.to_owned(),
                replica_id: self.scope.ctx.replica.id,
                session_id: l.session,
                since: l.joined_ns,
                run: self.scope.ctx.replica.run_id,
            }
        };
        let me = self.clone();
        let authid = authid.to_owned();
        tokio::spawn(async move {
            let session = presence.session_id;
            let res = me
                .scope
                .ctx
                .replica
                .propose(Command::PresenceJoin { presence })
                .await;
            let retry = {
                let mut t = me.tracked.lock();
                match t.local.get_mut(&authid).filter(|l| l.session == session) {
                    Some(l) => {
                        l.proposing = false;
                        match res {
                            Ok(_) => {
                                l.confirmed = true;
                                false
                            }
                            Err(e) => {
                                tracing::warn!(
                                    "presence of node {authid} not written: {e}; trying again in {} ms",
                                    PRESENCE_RETRY.as_millis()
                                );
                                true
                            }
                        }
                    }
                    None => false, // the session is gone or replaced
                }
            };
            // Not left to the node's next heartbeat (a node may send none): while the session
            // is here and unconfirmed, the write is tried again.
            if retry {
                tokio::time::sleep(PRESENCE_RETRY).await;
                me.write_presence(&authid);
            }
        });
    }

    /// `wamp.session.on_leave`: the node's presence goes, if it is still this session's.
    pub fn on_session_leave(self: &Arc<Self>, ev: Event) {
        let args = ev.args();
        let (Some(session), Some(authid), Some("node")) = (
            args.first().and_then(Value::as_u64),
            args.get(1).and_then(Value::as_str),
            args.get(2).and_then(Value::as_str),
        ) else {
            return;
        };
        let gone = {
            let mut t = self.tracked.lock();
            match t.local.get(authid) {
                Some(l) if l.session == session => t.local.remove(authid),
                _ => None,
            }
        };
        let Some(gone) = gone else { return };
        tracing::info!(
            "node {authid} left management realm {}",
            self.scope.mrealm_name
        );
        let replica = self.scope.ctx.replica.clone();
        let authid = authid.to_owned();
        tokio::spawn(async move {
            let leave = Command::PresenceLeave {
                node_oid: gone.oid,
                session_id: gone.session,
            };
            // A leave that cannot be written now is retried; a replica restart drops the
            // record too (PresenceDropStale).
            for attempt in 0..10u32 {
                match replica.propose(leave.clone()).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(
                            "presence of node {authid} not removed (try {attempt}): {e}"
                        );
                        tokio::time::sleep(Duration::from_secs(1 << attempt.min(4))).await;
                    }
                }
            }
        });
    }

    /// `crossbarfabriccenter.node.on_heartbeat (authid, hb)`.
    pub fn on_heartbeat(self: &Arc<Self>, ev: &Event) {
        let args = ev.args();
        let (Some(authid), Some(Value::Dict(hb))) =
            (args.first().and_then(Value::as_str), args.get(1))
        else {
            tracing::debug!("malformed node heartbeat ignored");
            return;
        };
        let (Some(seq), Some(timestamp)) = (
            hb.get("seq").and_then(Value::as_i64),
            hb.get("timestamp").and_then(Value::as_i64),
        ) else {
            tracing::debug!("heartbeat of {authid} without integer seq/timestamp ignored");
            return;
        };
        let workers = match hb.get("workers") {
            Some(Value::Dict(w))
                if w.iter()
                    .all(|(k, v)| WORKER_TYPES.contains(&k.as_str()) && v.as_i64().is_some()) =>
            {
                Some(Value::Dict(w.clone()))
            }
            None => None,
            Some(_) => {
                tracing::debug!("heartbeat of {authid} with bad worker counts ignored");
                return;
            }
        };
        // Heartbeats of nodes held by other replicas arrive relayed; they feed get_node here
        // too. Such a node may not be in the online set yet (its presence write is applied
        // here a moment later), so the pairing is the fallback.
        let known = {
            let t = self.tracked.lock();
            t.local.get(authid).map(|l| l.oid).or_else(|| {
                t.online
                    .iter()
                    .find(|(_, a)| a.as_str() == authid)
                    .map(|(oid, _)| *oid)
            })
        };
        let oid = match known {
            Some(oid) => oid,
            None => match self.node_by_authid(authid) {
                Ok(Some(node)) => node.oid,
                _ => return,
            },
        };
        let unconfirmed = {
            let mut t = self.tracked.lock();
            let a = t.activity.entry(oid).or_default();
            a.last_active = now_ns();
            a.last_activity = ACTIVITY_HEARTBEAT;
            a.counter = Some(seq);
            a.time = Some(timestamp);
            if workers.is_some() {
                a.workers = workers;
            }
            t.local.get(authid).is_some_and(|l| !l.confirmed)
        };
        if unconfirmed {
            self.write_presence(authid);
        }
    }

    /// Brings the online set in line with the presence records after an applied change:
    /// publishes ready/shutdown, confirms local presence, and closes local sessions that a
    /// newer session of the same node (on any replica) replaced.
    pub fn sync_presence(&self, all: &[Presence]) {
        let me = self.scope.ctx.replica.id;
        let current: HashMap<Uuid, &Presence> = all
            .iter()
            .filter(|p| p.mrealm_oid == self.scope.mrealm_oid)
            .map(|p| (p.node_oid, p))
            .collect();
        let mut ready = Vec::new();
        let mut shutdown = Vec::new();
        let mut replaced = Vec::new();
        {
            let mut t = self.tracked.lock();
            for (oid, p) in &current {
                if !t.online.contains_key(oid) {
                    t.online.insert(*oid, p.authid.clone());
                    ready.push((*oid, p.authid.clone()));
                }
            }
            let gone: Vec<Uuid> = t
                .online
                .keys()
                .filter(|o| !current.contains_key(o))
                .copied()
                .collect();
            for oid in gone {
                if let Some(authid) = t.online.remove(&oid) {
                    shutdown.push((oid, authid));
                }
            }
            for l in t.local.values_mut() {
                match current.get(&l.oid) {
                    Some(p) if p.replica_id == me && p.session_id == l.session => {
                        l.confirmed = true
                    }
                    Some(p) if p.since > l.joined_ns => replaced.push(l.session),
                    _ => l.confirmed = false,
                }
            }
            if !t.primed {
                t.primed = true;
                ready.clear();
                shutdown.clear();
            }
            for (oid, _) in &ready {
                let a = t.activity.entry(*oid).or_default();
                a.last_active = now_ns();
                a.last_activity = ACTIVITY_READY;
            }
        }
        for sid in replaced {
            self.realm().kill_session(
                sid,
                "wamp.close.replaced",
                "the node connected again elsewhere; this older session is replaced",
            );
        }
        for (oid, authid) in ready {
            let info = self.node_info(oid, &authid, true);
            self.scope.events.publish_local(
                "crossbarfabriccenter.mrealm.on_node_ready",
                vec![oid.to_string().into(), info],
            );
        }
        for (oid, authid) in shutdown {
            let info = self.node_info(oid, &authid, false);
            self.scope.events.publish_local(
                "crossbarfabriccenter.mrealm.on_node_shutdown",
                vec![oid.to_string().into(), info],
            );
        }
    }

    /// Calls `get_status` on every node session this replica holds; a node that stops
    /// answering has its session closed, which takes it offline.
    pub async fn probe(self: &Arc<Self>) {
        let nodes: Vec<(String, Id)> = self
            .tracked
            .lock()
            .local
            .iter()
            .map(|(a, l)| (a.clone(), l.session))
            .collect();
        for (authid, session) in nodes {
            let uri = format!("crossbarfabriccenter.node.{authid}.get_status");
            let res = self
                .caller
                .call(&uri, Payload::default(), PROBE_TIMEOUT)
                .await;
            let close = {
                let mut t = self.tracked.lock();
                let Some(l) = t.local.get_mut(&authid).filter(|l| l.session == session) else {
                    continue;
                };
                let oid = l.oid;
                match &res {
                    Ok(p) => {
                        l.probe_failures = 0;
                        let workers = p
                            .args
                            .as_ref()
                            .and_then(|a| match a {
                                Value::List(l) => l.first(),
                                _ => None,
                            })
                            .and_then(|s| match s {
                                Value::Dict(d) => d.get("workers_by_type").cloned(),
                                _ => None,
                            });
                        let a = t.activity.entry(oid).or_default();
                        a.last_active = now_ns();
                        a.last_activity = ACTIVITY_CHECK;
                        if workers.is_some() {
                            a.workers = workers;
                        }
                        false
                    }
                    Err(e) => {
                        l.probe_failures += 1;
                        tracing::info!(
                            "liveness probe of node {authid} failed ({}): {} {}",
                            l.probe_failures,
                            e.uri,
                            e.message
                        );
                        e.uri == crate::wamp::errors::TIMEOUT
                            || l.probe_failures >= PROBE_FAILURES_TOLERATED
                    }
                }
            };
            if close {
                self.realm().kill_session(
                    session,
                    "wamp.close.timeout",
                    "the node does not answer the master's liveness probe",
                );
            }
        }
    }

    /// `crossbarfabriccenter.mrealm.on_tick` every 5 s, as the reference.
    pub fn tick(&self) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        self.scope.events.publish_local(
            "crossbarfabriccenter.mrealm.on_tick",
            vec![Value::Dict(crate::dict! {
                "now" => crate::clock::now_iso(),
                "tick" => tick,
            })],
        );
    }

    /// Nodes online according to the last presence sync (oid → authid).
    pub fn online(&self) -> HashSet<Uuid> {
        self.tracked.lock().online.keys().copied().collect()
    }
}
