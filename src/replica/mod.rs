//! The replicated state as the rest of the master sees it: propose a command from any
//! replica (followers forward to the leader), read linearizably, change the membership.

mod departure;
mod errors;
pub mod joint_config;
pub mod learner_reaper;
mod membership;
mod node_calls;
pub mod presence_lease;
mod read;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};
use redb::Database;
use serde::{Deserialize, Serialize};

pub use errors::{MembershipError, ProposeError, QueryError, ReadError};
pub use membership::{JoinAs, Survey, decode_membership_reply};

use crate::metrics::meters;
use crate::raft::{self, LogStore, Network, NodeId, Raft, StateMachine};
use crate::rpc::{Clients, pb};
use crate::store::{Command, Index, Kind};

/// A read for the CLI and tests; the management API reads through [`Replica::read`].
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    Get { kind: Kind, key: String },
    List { kind: Kind, prefix: String },
    Count { kind: Kind },
    Lookup { index: Index, key: String },
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Status {
    pub id: NodeId,
    pub advertise: String,
    pub state: String,
    pub leader: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    pub voters: Vec<NodeId>,
    /// The voter sets a write must reach a majority of: one, or two while a membership
    /// change is in its joint stage (`voters` is then their union).
    #[serde(default)]
    pub voter_sets: Vec<Vec<NodeId>>,
    pub learners: Vec<NodeId>,
    pub nodes: BTreeMap<NodeId, String>,
    /// Whether this replica can currently commit writes (a leader heard from recently).
    pub has_quorum: bool,
    /// Client sessions on this replica (filled in by the peer service).
    #[serde(default)]
    pub sessions: Option<u64>,
}

/// A proposal waiting for the next batch.
type Pending = (
    Command,
    tokio::sync::oneshot::Sender<Result<serde_json::Value, ProposeError>>,
);

/// Most commands in one log entry.
const BATCH_MAX: usize = 1024;

/// Entries proposed but not yet applied: one being written while the next one fills keeps
/// the leader's disk and the followers' disks busy at the same time.
const BATCHES_IN_FLIGHT: usize = 1;

/// A leader's read lease: valid while it still leads in `term`, until `until`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadLease {
    pub term: u64,
    pub until: Instant,
}

pub struct Replica {
    pub id: NodeId,
    batcher: tokio::sync::mpsc::UnboundedSender<Pending>,
    pub advertise: String,
    /// Drawn at each start (never 0): what this run of the replica wrote, as opposed to
    /// what an earlier run left behind (node presence).
    pub run_id: u64,
    pub raft: Raft,
    pub db: Arc<Database>,
    pub(crate) clients: Clients,
    write_timeout: Duration,
    timing: raft::Timing,
    started: Instant,
    membership_lock: tokio::sync::Mutex<()>,
    /// Held for a whole join on the leader (`membership.rs`).
    join_lock: tokio::sync::Mutex<()>,
    /// Replicas that join by themselves vote while the cluster has fewer voters than this.
    max_voters: usize,
    /// Whether this replica started with no membership (an empty data dir).
    started_empty: bool,
    /// When the last read-index round started, and what it returned.
    last_read_index: tokio::sync::Mutex<Option<(Instant, Option<u64>)>>,
    /// Until when this replica, as leader, answers reads from its own state (`read.rs`).
    read_lease: parking_lot::Mutex<Option<ReadLease>>,
    /// Milliseconds since `started` when a leader last reached us (or we reached a quorum).
    leader_contact_ms: AtomicU64,
}

const NO_CONTACT: u64 = u64::MAX;

impl Replica {
    /// Opens the replica's redb file and starts its raft node (not yet part of a cluster).
    pub async fn open(
        id: NodeId,
        advertise: String,
        db: Arc<Database>,
        write_timeout: Duration,
        timing: raft::Timing,
        max_voters: usize,
        tls: Option<Arc<crate::tls::PeerTls>>,
    ) -> anyhow::Result<Arc<Replica>> {
        timing.check().map_err(anyhow::Error::msg)?;
        let clients = Clients::new(tls);
        let config = Arc::new(raft::config(timing).validate()?);
        let raft = Raft::new(
            id,
            config,
            Network::new(clients.clone()),
            LogStore::open(db.clone())?,
            StateMachine::new(db.clone()),
        )
        .await?;
        let started_empty = !raft.is_initialized().await?;
        let (batcher, queue) = tokio::sync::mpsc::unbounded_channel();
        let replica = Arc::new(Replica {
            id,
            batcher,
            advertise,
            run_id: rand::random::<u64>().max(1),
            raft,
            db,
            clients,
            write_timeout,
            timing,
            started: Instant::now(),
            membership_lock: tokio::sync::Mutex::new(()),
            join_lock: tokio::sync::Mutex::new(()),
            max_voters,
            started_empty,
            last_read_index: tokio::sync::Mutex::new(None),
            read_lease: parking_lot::Mutex::new(None),
            leader_contact_ms: AtomicU64::new(NO_CONTACT),
        });
        replica.clone().watch_leader_contact();
        tokio::spawn(run_batches(replica.raft.clone(), queue));
        Ok(replica)
    }

    /// Stops the raft node (its tasks end; the redb file stays consistent).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("stopping raft: {e}");
        }
    }

    /// Keeps `leader_contact_ms` fresh from raft metrics: a leader counts its quorum acks,
    /// a follower counts heartbeats it receives (through changes of the metrics).
    fn watch_leader_contact(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        let mut metrics = self.raft.metrics();
        drop(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { return },
                    _ = tick.tick() => {}
                }
                let Some(me) = weak.upgrade() else { return };
                let m = metrics.borrow().clone();
                let now = me.started.elapsed().as_millis() as u64;
                let fresh = match m.state {
                    ServerState::Leader => m.millis_since_quorum_ack.map(|a| now.saturating_sub(a)),
                    _ => None,
                };
                if let Some(t) = fresh {
                    me.leader_contact_ms.store(t, Ordering::Relaxed);
                }
            }
        });
    }

    /// Called by the peer service whenever the leader's append-entries reaches us.
    pub fn leader_contacted(&self) {
        self.leader_contact_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn has_quorum(&self) -> bool {
        let last = self.leader_contact_ms.load(Ordering::Relaxed);
        if last == NO_CONTACT {
            return false;
        }
        let limit = self.timing.election_timeout_min_ms * 4;
        self.started.elapsed().as_millis() as u64 <= last + limit
    }

    fn leader_addr(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    /// Proposes a command; on a follower it is forwarded to the leader. Retried with the
    /// next leader when the current one fails, under one proposal id, so a write whose answer
    /// was lost is not applied twice (`store/once.rs`).
    pub async fn propose(&self, cmd: Command) -> Result<serde_json::Value, ProposeError> {
        let cmd = match cmd {
            once @ Command::Once { .. } => once,
            cmd => Command::Once {
                id: uuid::Uuid::new_v4().simple().to_string(),
                at_ms: Some((crate::clock::now_micros() / 1000) as u64),
                command: Box::new(cmd),
            },
        };
        let started = Instant::now();
        let res = self.propose_until(cmd, started + self.write_timeout).await;
        let outcome = match &res {
            Ok(_) => "ok",
            Err(ProposeError::Refused(_)) => "refused",
            Err(ProposeError::NotLeader { .. }) => "not_leader",
            Err(ProposeError::NoQuorum(_)) => "no_quorum",
            Err(ProposeError::Timeout(_)) => "timeout",
            Err(ProposeError::Fatal(_)) => "fatal",
        };
        meters().observe_proposal(outcome, started.elapsed());
        res
    }

    async fn propose_until(
        &self,
        cmd: Command,
        deadline: Instant,
    ) -> Result<serde_json::Value, ProposeError> {
        loop {
            let res = match self.leader_addr() {
                Some((leader, _)) if leader == self.id => self.propose_here(cmd.clone()).await,
                Some((_, addr)) => self.forward(&addr, &cmd, deadline).await,
                None => Err(ProposeError::NotLeader { leader: None }),
            };
            match res {
                Err(ProposeError::NotLeader { .. }) if Instant::now() < deadline => {
                    // An election is under way or our view of the leader is stale.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(ProposeError::NotLeader { .. }) => {
                    return Err(ProposeError::NoQuorum(format!(
                        "no leader was reachable within {} ms",
                        self.write_timeout.as_millis()
                    )));
                }
                other => return other,
            }
        }
    }

    async fn forward(
        &self,
        addr: &str,
        cmd: &Command,
        deadline: Instant,
    ) -> Result<serde_json::Value, ProposeError> {
        let mut client = self
            .clients
            .get(addr)
            .map_err(|e| ProposeError::Fatal(e.to_string()))?;
        let mut req = tonic::Request::new(pb::Proposal {
            command: serde_json::to_vec(cmd).expect("commands serialize"),
            forwarded: true,
        });
        req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        match client.propose(req).await {
            Ok(reply) => serde_json::from_slice(&reply.into_inner().result)
                .map_err(|e| ProposeError::Fatal(format!("bad reply from leader: {e}")))?,
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                Err(ProposeError::Timeout(self.write_timeout.as_millis() as u64))
            }
            // The leader is gone or unreachable: wait for the next one.
            Err(_) => Err(ProposeError::NotLeader { leader: None }),
        }
    }

    /// Proposes on this replica, which must be the leader.
    pub async fn propose_here(&self, cmd: Command) -> Result<serde_json::Value, ProposeError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.batcher
            .send((cmd, tx))
            .map_err(|_| ProposeError::Fatal("the replica is shutting down".into()))?;
        match tokio::time::timeout(self.write_timeout, rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(ProposeError::Fatal("the batcher stopped".into())),
            Err(_) => Err(ProposeError::Timeout(self.write_timeout.as_millis() as u64)),
        }
    }

    /// Resolves when the Raft core stops by itself (a storage error such as a full disk):
    /// the replica can no longer take part, and says why.
    pub async fn raft_stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the Raft core ended".into();
            }
        }
    }

    /// On the leader: how many log entries each other member has yet to receive; empty on
    /// the others.
    pub fn replication_lag(&self) -> Vec<(NodeId, u64)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let last = m.last_log_index.unwrap_or(0);
        m.replication
            .iter()
            .flat_map(|r| r.iter())
            .filter(|(id, _)| **id != self.id)
            .map(|(id, matched)| {
                let matched = matched.map(|l| l.index).unwrap_or(0);
                (*id, last.saturating_sub(matched))
            })
            .collect()
    }

    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        Status {
            id: self.id,
            advertise: self.advertise.clone(),
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            leader_addr: m
                .current_leader
                .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone())),
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            learners: membership.learner_ids().collect(),
            voters: voters.into_iter().collect(),
            voter_sets: membership
                .get_joint_config()
                .iter()
                .map(|set| set.iter().copied().collect())
                .collect(),
            nodes: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            has_quorum: self.has_quorum(),
            sessions: None,
        }
    }
}

/// Collects the proposals that arrive while one batch is being committed into the next
/// batch: one log entry, one fsync on each replica, however many proposers are waiting.
async fn run_batches(raft: Raft, mut queue: tokio::sync::mpsc::UnboundedReceiver<Pending>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Drain after the permit: the batch takes everything that queued meanwhile.
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (cmds, waiters): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
            match raft.client_write(cmds).await {
                Ok(resp) => {
                    for (waiter, applied) in waiters.into_iter().zip(resp.data) {
                        let _ = waiter.send(applied.map_err(ProposeError::Refused));
                    }
                }
                Err(e) => {
                    let err = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            ProposeError::NotLeader {
                                leader: f.leader_node.map(|n| n.addr),
                            }
                        }
                        other => ProposeError::Fatal(other.to_string()),
                    };
                    for waiter in waiters {
                        let _ = waiter.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
