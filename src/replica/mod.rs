//! The replicated state as the rest of the master sees it: propose a command from any
//! replica (followers forward to the leader), read linearizably, change the membership.

pub mod presence_lease;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};

use crate::peer::{Clients, pb};
use crate::raft::{self, LogStore, Network, NodeId, Raft, StateMachine};
use crate::store::{ApplyError, Command, Index, Kind, Reader, StoreError};

/// Why a proposal did not produce an answer. Crosses the wire when a write is forwarded.
#[derive(thiserror::Error, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ProposeError {
    #[error(transparent)]
    Refused(#[from] ApplyError),
    #[error("this replica is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<String> },
    #[error("no quorum: {0}")]
    NoQuorum(String),
    #[error("the write was not confirmed within {0} ms; it may still be applied")]
    Timeout(u64),
    #[error("replica failure: {0}")]
    Fatal(String),
}

impl ProposeError {
    /// The WAMP error URI for a client.
    pub fn uri(&self) -> &'static str {
        match self {
            ProposeError::Refused(e) => e.uri(),
            ProposeError::NotLeader { .. } | ProposeError::NoQuorum(_) => "fabric.error.no-quorum",
            ProposeError::Timeout(_) => "wamp.error.timeout",
            ProposeError::Fatal(_) => "wamp.error.runtime_error",
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum ReadError {
    #[error("no quorum to confirm a linearizable read: {0}")]
    NoQuorum(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    pub learners: Vec<NodeId>,
    pub nodes: BTreeMap<NodeId, String>,
    /// Whether this replica can currently commit writes (a leader heard from recently).
    pub has_quorum: bool,
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

pub struct Replica {
    pub id: NodeId,
    batcher: tokio::sync::mpsc::UnboundedSender<Pending>,
    pub advertise: String,
    pub raft: Raft,
    pub db: Arc<Database>,
    pub(crate) clients: Clients,
    write_timeout: Duration,
    started: Instant,
    membership_lock: tokio::sync::Mutex<()>,
    /// When the last read-index round started, and what it returned.
    last_read_index: tokio::sync::Mutex<Option<(Instant, Option<u64>)>>,
    /// Milliseconds since `started` when a leader last reached us (or we reached a quorum).
    leader_contact_ms: AtomicU64,
    /// Answers node calls routed here by other replicas (set once the API is up).
    pub node_calls: std::sync::OnceLock<crate::peer::NodeCallFn>,
    /// Delivers publications relayed from other replicas to this replica's subscribers.
    pub relayed_events: std::sync::OnceLock<crate::peer::relay::RelayedEventsFn>,
}

const NO_CONTACT: u64 = u64::MAX;

impl Replica {
    /// Opens the replica's redb file and starts its raft node (not yet part of a cluster).
    pub async fn open(
        id: NodeId,
        advertise: String,
        db: Arc<Database>,
        write_timeout: Duration,
    ) -> anyhow::Result<Arc<Replica>> {
        let clients = Clients::default();
        let config = Arc::new(raft::config().validate()?);
        let raft = Raft::new(
            id,
            config,
            Network::new(clients.clone()),
            LogStore::open(db.clone())?,
            StateMachine::new(db.clone()),
        )
        .await?;
        let (batcher, queue) = tokio::sync::mpsc::unbounded_channel();
        let replica = Arc::new(Replica {
            id,
            batcher,
            advertise,
            raft,
            db,
            clients,
            write_timeout,
            started: Instant::now(),
            membership_lock: tokio::sync::Mutex::new(()),
            last_read_index: tokio::sync::Mutex::new(None),
            leader_contact_ms: AtomicU64::new(NO_CONTACT),
            node_calls: std::sync::OnceLock::new(),
            relayed_events: std::sync::OnceLock::new(),
        });
        replica.clone().watch_leader_contact();
        tokio::spawn(run_batches(replica.raft.clone(), queue));
        Ok(replica)
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
        let limit = raft::config().election_timeout_max * 2;
        self.started.elapsed().as_millis() as u64 <= last + limit
    }

    pub fn is_initialized(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some()
    }

    /// Forms a new one-voter cluster (a no-op if this replica already has a membership).
    pub async fn bootstrap(&self) -> anyhow::Result<()> {
        if self.is_initialized() {
            return Ok(());
        }
        let members = BTreeMap::from([(
            self.id,
            BasicNode {
                addr: self.advertise.clone(),
            },
        )]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Asks a running replica (any; it forwards to the leader) to take this one in.
    pub async fn join_via(&self, seed: &str) -> anyhow::Result<()> {
        let mut client = crate::peer::client(seed)?;
        let reply = client
            .join(pb::JoinRequest {
                node_id: self.id,
                addr: self.advertise.clone(),
                voter: true,
            })
            .await?
            .into_inner();
        let res: Result<serde_json::Value, String> = serde_json::from_slice(&reply.json)?;
        res.map(|_| ()).map_err(|e| anyhow::anyhow!(e))
    }

    /// Routes a call to a node whose session is held by replica `holder`.
    pub async fn call_node_on(
        &self,
        holder: NodeId,
        realm: &str,
        procedure: &str,
        payload: crate::wamp::Payload,
        timeout: Duration,
    ) -> Result<crate::wamp::Payload, crate::router::internal::CallError> {
        use crate::peer::{WirePayload, WireResult, unreachable};
        let addr = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .get_node(&holder)
                .map(|n| n.addr.clone())
        };
        let addr = addr.ok_or_else(|| unreachable(holder, "not a member"))?;
        let mut client = self
            .clients
            .get(&addr)
            .map_err(|e| unreachable(holder, e))?;
        let request = pb::NodeCall {
            realm: realm.to_owned(),
            procedure: procedure.to_owned(),
            payload: crate::raft::codec::encode(&WirePayload::from(payload)),
            timeout_ms: timeout.as_millis() as u64,
        };
        // The holder bounds the node's answer by `timeout`; allow for the hop itself.
        let reply =
            tokio::time::timeout(timeout + Duration::from_secs(2), client.call_node(request))
                .await
                .map_err(|_| unreachable(holder, "no answer"))?
                .map_err(|e| unreachable(holder, e.message()))?
                .into_inner();
        let res: WireResult = crate::raft::codec::decode(&reply.result)
            .map_err(|e| unreachable(holder, format!("bad reply: {e}")))?;
        res.map(Into::into).map_err(|(uri, payload)| {
            crate::router::internal::CallError::passed_on(uri, payload.into())
        })
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

    /// Proposes a command; on a follower it is forwarded to the leader.
    pub async fn propose(&self, cmd: Command) -> Result<serde_json::Value, ProposeError> {
        let deadline = Instant::now() + self.write_timeout;
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

    /// Waits until this replica's state reflects every write acknowledged before the call.
    pub async fn linearize(&self) -> Result<(), ReadError> {
        if self.holds_read_lease() {
            return Ok(());
        }
        let index = self.shared_read_index().await?;
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        if applied >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(self.write_timeout))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map_err(|e| ReadError::NoQuorum(e.to_string()))?;
        Ok(())
    }

    /// A leader that a quorum acknowledged less than `READ_LEASE` ago answers reads from its
    /// own state: no other leader can have been elected in the meantime (that takes at least
    /// the minimum election timeout, which the lease stays well below), and every write it
    /// acknowledged was applied before the acknowledgement. Entries it holds but has not
    /// applied yet (a leader restored after a restart) send the read the slow way.
    /// Whether this replica leads the cluster right now.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    fn holds_read_lease(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.id)
            && m.millis_since_quorum_ack
                .is_some_and(|ms| ms < crate::raft::READ_LEASE.as_millis() as u64)
            && m.last_applied.map(|l| l.index) >= m.last_log_index
    }

    /// A read index obtained after this call began, shared with every read waiting for one.
    ///
    /// A confirmation round (a quorum heartbeat on the leader, one RPC from a follower)
    /// serves all reads that were already waiting when it started, so concurrent reads cost
    /// one round per round trip instead of one each.
    async fn shared_read_index(&self) -> Result<Option<u64>, ReadError> {
        let asked = Instant::now();
        let mut last = self.last_read_index.lock().await;
        if let Some((started, index)) = *last
            && started >= asked
        {
            return Ok(index);
        }
        let started = Instant::now();
        let index = self.fetch_read_index().await?;
        *last = Some((started, index));
        Ok(index)
    }

    async fn fetch_read_index(&self) -> Result<Option<u64>, ReadError> {
        let timeout = self.write_timeout;
        match self.leader_addr() {
            Some((leader, _)) if leader == self.id => {
                self.leader_read_index().await.map_err(ReadError::NoQuorum)
            }
            Some((_, addr)) => {
                let mut client = self
                    .clients
                    .get(&addr)
                    .map_err(|e| ReadError::NoQuorum(e.to_string()))?;
                let mut req = tonic::Request::new(pb::ReadIndexRequest {});
                req.set_timeout(timeout);
                Ok(client
                    .read_index(req)
                    .await
                    .map_err(|e| ReadError::NoQuorum(e.message().to_string()))?
                    .into_inner()
                    .index)
            }
            None => Err(ReadError::NoQuorum("no leader".into())),
        }
    }

    /// The log index a linearizable read must wait for, decided on the leader.
    ///
    /// openraft confirms leadership with a quorum and proposes its commit index, but a
    /// leader restored after a restart keeps its term without a new entry, and its commit
    /// index may then trail writes that were acknowledged before the crash. Every
    /// acknowledged write is in the leader's log, so waiting for the last log index to be
    /// applied is always enough.
    pub async fn leader_read_index(&self) -> Result<Option<u64>, String> {
        let (read, _) = tokio::time::timeout(self.write_timeout, self.raft.get_read_log_id())
            .await
            .map_err(|_| "leadership not confirmed in time".to_string())?
            .map_err(|e| e.to_string())?;
        let last = self.raft.metrics().borrow().last_log_index;
        Ok(read.map(|l| l.index).max(last))
    }

    /// A consistent view of the local state, without a freshness check.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        Ok(Reader::new(txn))
    }

    /// A linearizable view: it contains every write acknowledged before the call.
    pub async fn read(&self) -> Result<Reader, ReadError> {
        self.linearize().await?;
        Ok(self.reader()?)
    }

    pub async fn query(&self, q: Query) -> Result<serde_json::Value, String> {
        let r = self.read().await.map_err(|e| e.to_string())?;
        let out = match q {
            Query::Get { kind, key } => r
                .get_json(kind, &key)
                .map(|v| v.unwrap_or(serde_json::Value::Null)),
            Query::List { kind, prefix } => r
                .list_json(kind, &prefix)
                .map(|items| serde_json::Value::Array(items.into_iter().map(|(_, v)| v).collect())),
            Query::Count { kind } => r.count(kind).map(serde_json::Value::from),
            Query::Lookup { index, key } => r.index_keys(index, &key).map(|keys| {
                serde_json::Value::Array(keys.into_iter().map(serde_json::Value::String).collect())
            }),
        };
        out.map_err(|e| e.to_string())
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
            nodes: membership
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
            has_quorum: self.has_quorum(),
        }
    }

    /// Adds a replica as a learner, then (with `voter`) as a voter. Runs on the leader;
    /// other replicas pass it on.
    pub async fn join(
        &self,
        id: NodeId,
        addr: String,
        voter: bool,
    ) -> Result<serde_json::Value, String> {
        match self.leader_addr() {
            Some((leader, _)) if leader == self.id => {}
            Some((_, leader_addr)) => {
                let mut client = self.clients.get(&leader_addr).map_err(|e| e.to_string())?;
                let reply = client
                    .join(pb::JoinRequest {
                        node_id: id,
                        addr,
                        voter,
                    })
                    .await
                    .map_err(|e| e.message().to_string())?;
                return serde_json::from_slice(&reply.into_inner().json)
                    .map_err(|e| e.to_string())?;
            }
            None => return Err("no leader".into()),
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let known = membership.get_node(&id).map(|n| n.addr.clone());
        if known.as_deref() != Some(addr.as_str()) {
            self.change_membership(ChangeMembers::AddNodes(BTreeMap::from([(
                id,
                BasicNode { addr: addr.clone() },
            )])))
            .await?;
            // Promote only once the learner has caught up, as add_learner(blocking) would.
            self.wait_caught_up(id).await?;
        }
        let is_voter = membership.voter_ids().any(|v| v == id);
        if voter && !is_voter {
            self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                .await?;
        }
        tracing::info!("replica {id} at {addr} joined (voter: {voter})");
        Ok(serde_json::to_value(self.status()).expect("status serializes"))
    }

    /// One membership change at a time; a change that meets another one still committing
    /// (two replicas joining at once, a remove right after a join) waits and retries.
    async fn change_membership(
        &self,
        changes: ChangeMembers<NodeId, BasicNode>,
    ) -> Result<(), String> {
        let _one_at_a_time = self.membership_lock.lock().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.raft.change_membership(changes.clone(), false).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    openraft::error::ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Waits until replica `id` has replicated the leader's log (bounded).
    async fn wait_caught_up(&self, id: NodeId) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let caught_up = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index);
                matched.is_some() && matched >= m.last_log_index.map(|i| i.saturating_sub(64))
            };
            if caught_up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("replica {id} did not catch up within 120 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes a replica from the membership (voter or learner). Runs on the leader.
    pub async fn remove(&self, id: NodeId) -> Result<serde_json::Value, String> {
        match self.leader_addr() {
            Some((leader, _)) if leader == self.id => {}
            Some((_, leader_addr)) => {
                let mut client = self.clients.get(&leader_addr).map_err(|e| e.to_string())?;
                let reply = client
                    .remove(pb::RemoveRequest { node_id: id })
                    .await
                    .map_err(|e| e.message().to_string())?;
                return serde_json::from_slice(&reply.into_inner().json)
                    .map_err(|e| e.to_string())?;
            }
            None => return Err("no leader".into()),
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == id) {
            let remaining: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != id).collect();
            if remaining.is_empty() {
                return Err("cannot remove the last voter".into());
            }
            self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                .await?;
        }
        let m = self.raft.metrics().borrow().clone();
        if m.membership_config.membership().get_node(&id).is_some() {
            self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                .await?;
        }
        // The nodes whose sessions it held are no longer reachable through it.
        if let Err(e) = self
            .propose(Command::PresenceDropReplica { replica_id: id })
            .await
        {
            tracing::warn!("dropping presence of removed replica {id}: {e}");
        }
        tracing::info!("replica {id} removed");
        Ok(serde_json::to_value(self.status()).expect("status serializes"))
    }

    /// A consistent dump of the state after a linearizable read.
    pub async fn backup(&self) -> Result<Vec<u8>, ReadError> {
        self.linearize().await?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(redb::Error::from)?;
            crate::store::snapshot::dump(&txn)
        })
        .await
        .map_err(|e| ReadError::NoQuorum(e.to_string()))?
        .map_err(ReadError::Store)
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
