//! The raft log and the state machine, both in the replica's one redb file.
//!
//! Log appends commit with `Durability::Immediate`: an entry is acknowledged only once it is
//! on disk. State machine applies commit with `Durability::None`: the log is the source of
//! truth, and redb makes a non-durable commit durable with the next immediate one (the next
//! append, snapshot or purge), so a crash loses only applies that the log replays.

// openraft's trait methods return its `StorageError` (224 bytes); our helpers return the same.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{LogId, NodeId, TypeConfig};
use crate::store::{self, Applied, StoreError};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// `vote`, `committed`, `last_purged`.
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// `last_applied`, `membership`.
const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// `meta`, `data`: the last snapshot built or installed.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");

type StorageResult<T> = Result<T, StorageError<NodeId>>;

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// Opens (or creates) the replica's database and makes sure every table exists.
pub fn open_database(path: &Path) -> Result<Arc<Database>, StoreError> {
    let existing = path.metadata().is_ok_and(|m| m.len() > 0);
    let damaged = |reason: String| StoreError::Damaged {
        path: path.display().to_string(),
        reason,
    };
    let mut db = redb::Builder::new()
        // redb caches up to 1 GiB by default; the state of a master is far smaller.
        .set_cache_size(64 << 20)
        // A file altered outside redb is refused rather than trusted: the open verifies the
        // checksum of every page of the committed trees (it reads the whole file once, which
        // for a master's state takes well under a second). A crash (kill -9, power loss) is
        // not damage: redb recovers from it by itself.
        .set_check_integrity_on_open(existing)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => damaged(why),
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if existing && io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                damaged(format!("shorter than its contents say: {io}"))
            }
            other => StoreError::from(redb::Error::from(other)),
        })?;
    compact_if_large(&mut db, path);
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(LOG_META)?;
    txn.open_table(SM_META)?;
    txn.open_table(SNAPSHOT)?;
    store::create_tables(&txn)?;
    txn.commit()?;
    Ok(Arc::new(db))
}

/// A state file larger than this is compacted when the replica starts.
const COMPACT_ABOVE_BYTES: u64 = 32 << 20;

/// redb reuses freed pages but never gives them back: a file grows to the largest its log and
/// state were at once (a burst of writes before a snapshot), then stays there; under steady
/// management traffic it sat at 6–9 times the state a backup holds. Compacting at start, before
/// anything else uses the file, returns that space. A failure only costs the space.
fn compact_if_large(db: &mut Database, path: &Path) {
    let size = |p: &Path| p.metadata().map(|m| m.len()).unwrap_or(0);
    let before = size(path);
    if before <= COMPACT_ABOVE_BYTES {
        return;
    }
    let started = std::time::Instant::now();
    match db.compact() {
        Ok(_) => tracing::info!(
            "compacted the state file {}: {} MiB -> {} MiB in {} ms",
            path.display(),
            before >> 20,
            size(path) >> 20,
            started.elapsed().as_millis()
        ),
        Err(e) => tracing::warn!("could not compact the state file {}: {e}", path.display()),
    }
}

fn io<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::<NodeId>::write(AnyError::new(&e)).into()
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    super::codec::encode(v)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> StorageResult<T> {
    super::codec::decode(b).map_err(io)
}

/// Runs blocking redb work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StorageResult<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(io)?
}

fn meta_get<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> StorageResult<Option<T>> {
    let txn = db.begin_read().map_err(io)?;
    let t = txn.open_table(table).map_err(io)?;
    let found = t.get(key).map_err(io)?;
    match found {
        Some(v) => Ok(Some(dec(v.value())?)),
        None => Ok(None),
    }
}

// ---- log ----------------------------------------------------------------------------------

/// The log lives in memory (it is bounded by the snapshot policy) and on disk. openraft
/// hands us one entry per client write; a dedicated writer thread drains everything queued
/// into one redb transaction and one fsync (group commit), then acknowledges each append.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<LogShared>,
}

struct LogShared {
    entries: parking_lot::Mutex<std::collections::BTreeMap<u64, Entry<TypeConfig>>>,
    vote: parking_lot::Mutex<Option<Vote<NodeId>>>,
    committed: Arc<parking_lot::Mutex<Option<LogId>>>,
    last_purged: parking_lot::Mutex<Option<LogId>>,
    writer: std::sync::mpsc::Sender<LogOp>,
}

enum LogOp {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        done: LogFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
    },
    Purge {
        upto: LogId,
    },
    Vote {
        vote: Vote<NodeId>,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// Most operations one group commit takes, so acknowledgements keep flowing under load.
const GROUP_COMMIT_MAX: usize = 4096;

impl LogStore {
    /// Loads the log into memory and starts its writer thread.
    pub fn open(db: Arc<Database>) -> Result<LogStore, StoreError> {
        let corrupt = |table: &str, e: rmp_serde::decode::Error| {
            StoreError::Snapshot(format!("corrupt {table}: {e}"))
        };
        let mut entries = std::collections::BTreeMap::new();
        let txn = db.begin_read()?;
        for item in txn.open_table(LOG)?.iter()? {
            let (k, v) = item?;
            let entry: Entry<TypeConfig> =
                super::codec::decode(v.value()).map_err(|e| corrupt("raft_log", e))?;
            entries.insert(k.value(), entry);
        }
        let meta = txn.open_table(LOG_META)?;
        let vote: Option<Vote<NodeId>> = match meta.get("vote")? {
            Some(v) => Some(super::codec::decode(v.value()).map_err(|e| corrupt("vote", e))?),
            None => None,
        };
        let committed: Option<LogId> = match meta.get("committed")? {
            Some(v) => super::codec::decode(v.value()).map_err(|e| corrupt("committed", e))?,
            None => None,
        };
        let last_purged: Option<LogId> = match meta.get("last_purged")? {
            Some(v) => super::codec::decode(v.value()).map_err(|e| corrupt("last_purged", e))?,
            None => None,
        };
        drop(meta);
        drop(txn);
        let (writer, queue) = std::sync::mpsc::channel();
        let committed = Arc::new(parking_lot::Mutex::new(committed));
        let committed_for_writer = committed.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || write_log(db, queue, committed_for_writer))
            .map_err(|e| StoreError::Snapshot(format!("starting the log writer: {e}")))?;
        Ok(LogStore {
            shared: Arc::new(LogShared {
                entries: parking_lot::Mutex::new(entries),
                vote: parking_lot::Mutex::new(vote),
                committed,
                last_purged: parking_lot::Mutex::new(last_purged),
                writer,
            }),
        })
    }

    fn send(&self, op: LogOp) -> StorageResult<()> {
        self.shared
            .writer
            .send(op)
            .map_err(|_| io(std::io::Error::other("the log writer has stopped")))
    }
}

/// The writer thread: drains the queue into one transaction per round.
fn write_log(
    db: Arc<Database>,
    queue: std::sync::mpsc::Receiver<LogOp>,
    committed: Arc<parking_lot::Mutex<Option<LogId>>>,
) {
    while let Ok(first) = queue.recv() {
        let mut ops = vec![first];
        while ops.len() < GROUP_COMMIT_MAX {
            match queue.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = commit_log_ops(&db, &ops, *committed.lock()).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!("raft log write failed: {e}");
        }
        for op in ops {
            match op {
                LogOp::Append { done, .. } => {
                    done.log_io_completed(result.clone().map_err(std::io::Error::other))
                }
                LogOp::Vote { done, .. } => {
                    let _ = done.send(result.clone());
                }
                _ => {}
            }
        }
    }
}

fn commit_log_ops(
    db: &Database,
    ops: &[LogOp],
    committed: Option<LogId>,
) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(LOG_META)?;
        for op in ops {
            match op {
                LogOp::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                    }
                }
                LogOp::Truncate { from } => {
                    log.retain_in(*from.., |_, _| false)?;
                }
                LogOp::Purge { upto } => {
                    // Only what a stored snapshot covers is forgotten. openraft asks for the
                    // purge as soon as it hands a received snapshot to the state machine, not
                    // once the snapshot is stored: a crash between the two left a log purged
                    // past the stored snapshot and state, a hole nothing can fill (openraft
                    // then refuses to start, or in a release build replays around it). The
                    // rest goes with the snapshot's own transaction (`install_snapshot`).
                    let covered = stored_snapshot_last(&txn)?;
                    let upto = match covered {
                        Some(c) if c.index < upto.index => Some(c),
                        Some(_) => Some(*upto),
                        None => None,
                    };
                    if let Some(upto) = upto {
                        purge_log_upto(&mut log, &mut meta, upto)?;
                    }
                }
                LogOp::Vote { vote, .. } => {
                    meta.insert("vote", enc(vote).as_slice())?;
                }
            }
        }
        meta.insert("committed", enc(&committed).as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// The last log id the stored snapshot covers.
fn stored_snapshot_last(txn: &redb::WriteTransaction) -> Result<Option<LogId>, StoreError> {
    let t = txn.open_table(SNAPSHOT)?;
    let Some(v) = t.get("meta")? else {
        return Ok(None);
    };
    let meta: SnapshotMeta<NodeId, openraft::BasicNode> = super::codec::decode(v.value())
        .map_err(|e| StoreError::Snapshot(format!("corrupt snapshot meta: {e}")))?;
    Ok(meta.last_log_id)
}

/// Deletes the log entries up to `upto` and records it as purged, unless the log is purged
/// that far already (the record never moves back).
fn purge_log_upto(
    log: &mut redb::Table<u64, &[u8]>,
    meta: &mut redb::Table<&str, &[u8]>,
    upto: LogId,
) -> Result<(), StoreError> {
    let already: Option<LogId> = match meta.get("last_purged")? {
        Some(v) => super::codec::decode(v.value())
            .map_err(|e| StoreError::Snapshot(format!("corrupt last_purged: {e}")))?,
        None => None,
    };
    if already.is_some_and(|a| a.index >= upto.index) {
        return Ok(());
    }
    meta.insert("last_purged", enc(&Some(upto)).as_slice())?;
    log.retain_in(..=upto.index, |_, _| false)?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let entries = self.shared.entries.lock();
        Ok(entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged = *self.shared.last_purged.lock();
        let last = self
            .shared
            .entries
            .lock()
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        *self.shared.vote.lock() = Some(*vote);
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(LogOp::Vote { vote: *vote, done })?;
        wait.await
            .map_err(|_| io(std::io::Error::other("the log writer has stopped")))?
            .map_err(|e| io(std::io::Error::other(e)))
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(*self.shared.vote.lock())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> StorageResult<()> {
        // Kept in memory and written with the next group commit of entries: on its own
        // it is not worth a transaction per commit.
        *self.shared.committed.lock() = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId>> {
        Ok(*self.shared.committed.lock())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let mut mem = self.shared.entries.lock();
            for e in entries {
                encoded.push((e.log_id.index, enc(&e)));
                mem.insert(e.log_id.index, e);
            }
        }
        // Visible to readers now; acknowledged by the writer once on disk.
        self.send(LogOp::Append {
            entries: encoded,
            done: callback,
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> StorageResult<()> {
        self.shared.entries.lock().retain(|k, _| *k < log_id.index);
        self.send(LogOp::Truncate { from: log_id.index })
    }

    async fn purge(&mut self, log_id: LogId) -> StorageResult<()> {
        *self.shared.last_purged.lock() = Some(log_id);
        self.shared.entries.lock().retain(|k, _| *k > log_id.index);
        self.send(LogOp::Purge { upto: log_id })
    }
}

mod state_machine;

pub use state_machine::{StateMachine, restore_into};

#[cfg(test)]
mod tests;
