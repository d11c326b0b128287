//! Linearizable reads: a leader read lease, or a read index shared by every read waiting
//! for one; and what is built on them (queries for the CLI, backups).

use std::time::Instant;

use openraft::ServerState;
use redb::ReadableDatabase;

use super::{Query, QueryError, ReadError, ReadLease, Replica};
use crate::rpc::pb;
use crate::store::{Reader, StoreError};

/// The pause before a read-index round that failed is tried again.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

impl Replica {
    /// Waits until this replica's state reflects every write acknowledged before the call.
    pub async fn linearize(&self) -> Result<(), ReadError> {
        let res = self.linearize_once().await;
        crate::metrics::meters().count_read(if res.is_ok() { "ok" } else { "no_quorum" });
        res
    }

    async fn linearize_once(&self) -> Result<(), ReadError> {
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

    /// Whether this replica leads the cluster right now.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// A leader whose leadership a quorum confirmed less than its read lease (half the
    /// minimum election timeout) ago answers reads
    /// from its own state: no other leader can have been elected in the meantime (that takes
    /// at least the minimum election timeout, which the lease stays well below), and every
    /// write it acknowledged was applied before the acknowledgement. Entries it holds but has
    /// not applied yet (a leader restored after a restart) send the read the slow way.
    ///
    /// The lease runs on the monotonic clock from the moment the confirmation round began
    /// (`leader_read_index`), not from openraft's `millis_since_quorum_ack`: that metric is
    /// as old as its last report, and a process frozen (SIGSTOP, a stalled VM) between the
    /// report and a read would trust a lease that ran out while it was frozen.
    fn holds_read_lease(&self) -> bool {
        let Some(lease) = *self.read_lease.lock() else {
            return false;
        };
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        Instant::now() < lease.until
            && m.state == ServerState::Leader
            && m.current_leader == Some(self.id)
            && m.current_term == lease.term
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

    /// One confirmation round with whoever leads now. A round follows the leader: when a
    /// new one is elected (the old one hung or was cut off), it starts over with the new
    /// one instead of waiting out the old one's timeout, so the reads queued behind it are
    /// not held up for the whole write timeout.
    async fn fetch_read_index(&self) -> Result<Option<u64>, ReadError> {
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let leader = self.leader_addr();
            let leader_id = leader.as_ref().map(|(id, _)| *id);
            let leader_changed = async {
                loop {
                    if metrics.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                    if metrics.borrow().current_leader != leader_id {
                        return;
                    }
                }
            };
            let round = async {
                match leader {
                    Some((id, _)) if id == self.id => {
                        self.leader_read_index().await.map_err(ReadError::NoQuorum)
                    }
                    Some((_, addr)) => self.remote_read_index(&addr).await,
                    // No leader known: wait for one (or the deadline).
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                answer = round => match answer {
                    Ok(index) => return Ok(index),
                    // A leader just elected, or one stepping down, may refuse a round for a
                    // moment: try again while there is time.
                    Err(e) if tokio::time::Instant::now() + RETRY_PAUSE < deadline => {
                        tracing::debug!("read index round failed, retrying: {e}");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                () = leader_changed => continue,
                () = tokio::time::sleep_until(deadline) => {
                    return Err(ReadError::NoQuorum(match leader_id {
                        Some(id) => format!("leader {id} did not confirm a read in time"),
                        None => "no leader".into(),
                    }));
                }
            }
        }
    }

    async fn remote_read_index(&self, addr: &str) -> Result<Option<u64>, ReadError> {
        let mut client = self
            .clients
            .get(addr)
            .map_err(|e| ReadError::NoQuorum(e.to_string()))?;
        let mut req = tonic::Request::new(pb::ReadIndexRequest {});
        req.set_timeout(self.write_timeout);
        Ok(client
            .read_index(req)
            .await
            .map_err(|e| ReadError::NoQuorum(e.message().to_string()))?
            .into_inner()
            .index)
    }

    /// The log index a linearizable read must wait for, decided on the leader.
    ///
    /// openraft confirms leadership with a quorum and proposes its commit index, but a
    /// leader restored after a restart keeps its term without a new entry, and its commit
    /// index may then trail writes that were acknowledged before the crash. Every
    /// acknowledged write is in the leader's log, so waiting for the last log index to be
    /// applied is always enough.
    ///
    /// The round also renews this leader's read lease, from the moment it began: the
    /// followers that confirmed it heard from it after that moment.
    pub async fn leader_read_index(&self) -> Result<Option<u64>, String> {
        let began = Instant::now();
        let term = self.raft.metrics().borrow().current_term;
        let (read, _) = tokio::time::timeout(self.write_timeout, self.raft.get_read_log_id())
            .await
            .map_err(|_| "leadership not confirmed in time".to_string())?
            .map_err(|e| e.to_string())?;
        let m = self.raft.metrics().borrow().clone();
        if m.current_term == term && m.state == ServerState::Leader {
            *self.read_lease.lock() = Some(ReadLease {
                term,
                until: began + self.timing.read_lease(),
            });
        }
        Ok(read.map(|l| l.index).max(m.last_log_index))
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

    pub async fn query(&self, q: Query) -> Result<serde_json::Value, QueryError> {
        let r = self.read().await?;
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
        Ok(out?)
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
