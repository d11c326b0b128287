//! The raft log and the state machine, both in the replica's one redb file.
//!
//! Log appends commit with `Durability::Immediate`: an entry is acknowledged only once it is
//! on disk. State machine applies commit with `Durability::None`: the log is the source of
//! truth, and redb makes a non-durable commit durable with the next immediate one (the next
//! append, snapshot or purge), so a crash loses only applies that the log replays.

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

/// Opens (or creates) the replica's database and makes sure every table exists.
pub fn open_database(path: &Path) -> Result<Arc<Database>, StoreError> {
    let db = Database::create(path).map_err(redb::Error::from)?;
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(LOG_META)?;
    txn.open_table(SM_META)?;
    txn.open_table(SNAPSHOT)?;
    store::create_tables(&txn)?;
    txn.commit()?;
    Ok(Arc::new(db))
}

fn io<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::<NodeId>::write(AnyError::new(&e)).into()
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("raft types serialize")
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> StorageResult<T> {
    serde_json::from_slice(b).map_err(io)
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

fn meta_put<T: Serialize>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &T,
) -> StorageResult<()> {
    let txn = db.begin_write().map_err(io)?;
    txn.open_table(table)
        .map_err(io)?
        .insert(key, enc(value).as_slice())
        .map_err(io)?;
    txn.commit().map_err(io)
}

// ---- log --------------------------------------------------------------------------------

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let db = self.db.clone();
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        blocking(move || {
            let txn = db.begin_read().map_err(io)?;
            let log = txn.open_table(LOG).map_err(io)?;
            let mut out = Vec::new();
            for item in log.range::<u64>(range).map_err(io)? {
                let (_, v) = item.map_err(io)?;
                out.push(dec(v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged: Option<LogId> = meta_get(&db, LOG_META, "last_purged")?;
            let txn = db.begin_read().map_err(io)?;
            let log = txn.open_table(LOG).map_err(io)?;
            let last = match log.last().map_err(io)? {
                Some((_, v)) => Some(dec::<Entry<TypeConfig>>(v.value())?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || meta_put(&db, LOG_META, "vote", &vote)).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        let db = self.db.clone();
        blocking(move || meta_get(&db, LOG_META, "vote")).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || {
            // Best effort: it only lets a restart apply committed entries before a leader
            // speaks, so it rides along with the next durable commit.
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::None).map_err(io)?;
            txn.open_table(LOG_META)
                .map_err(io)?
                .insert("committed", enc(&committed).as_slice())
                .map_err(io)?;
            txn.commit().map_err(io)
        })
        .await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId>> {
        let db = self.db.clone();
        blocking(move || Ok(meta_get::<Option<LogId>>(&db, LOG_META, "committed")?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, enc(&e)))
            .collect();
        let db = self.db.clone();
        let result = blocking(move || {
            let txn = db.begin_write().map_err(io)?;
            {
                let mut log = txn.open_table(LOG).map_err(io)?;
                for (index, bytes) in &encoded {
                    log.insert(*index, bytes.as_slice()).map_err(io)?;
                }
            }
            txn.commit().map_err(io)
        })
        .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(io)?;
            txn.open_table(LOG)
                .map_err(io)?
                .retain_in(log_id.index.., |_, _| false)
                .map_err(io)?;
            txn.commit().map_err(io)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(io)?;
            txn.open_table(LOG_META)
                .map_err(io)?
                .insert("last_purged", enc(&Some(log_id)).as_slice())
                .map_err(io)?;
            txn.open_table(LOG)
                .map_err(io)?
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(io)?;
            txn.commit().map_err(io)
        })
        .await
    }
}

// ---- state machine ----------------------------------------------------------------------

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
}

impl StateMachine {
    pub fn new(db: Arc<Database>) -> StateMachine {
        StateMachine { db }
    }
}

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

fn build_snapshot(db: &Database) -> StorageResult<Snapshot<TypeConfig>> {
    let txn = db.begin_read().map_err(io)?;
    let (last_applied, membership) = {
        let t = txn.open_table(SM_META).map_err(io)?;
        let last_applied: Option<LogId> = match t.get("last_applied").map_err(io)? {
            Some(v) => dec(v.value())?,
            None => None,
        };
        let membership: Membership = match t.get("membership").map_err(io)? {
            Some(v) => dec(v.value())?,
            None => Membership::default(),
        };
        (last_applied, membership)
    };
    let data = store::snapshot::dump(&txn).map_err(io)?;
    drop(txn);
    let snapshot_id = match last_applied {
        Some(l) => format!(
            "{}-{}-{}",
            l.leader_id,
            l.index,
            uuid::Uuid::new_v4().simple()
        ),
        None => format!("none-{}", uuid::Uuid::new_v4().simple()),
    };
    let meta = SnapshotMeta {
        last_log_id: last_applied,
        last_membership: membership,
        snapshot_id,
    };
    save_snapshot(db, &meta, &data)?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(data)),
    })
}

fn save_snapshot(
    db: &Database,
    meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
    data: &[u8],
) -> StorageResult<()> {
    let txn = db.begin_write().map_err(io)?;
    {
        let mut t = txn.open_table(SNAPSHOT).map_err(io)?;
        t.insert("meta", enc(meta).as_slice()).map_err(io)?;
        t.insert("data", data).map_err(io)?;
    }
    txn.commit().map_err(io)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let db = self.db.clone();
        blocking(move || build_snapshot(&db)).await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId>, Membership)> {
        let db = self.db.clone();
        blocking(move || {
            let last: Option<Option<LogId>> = meta_get(&db, SM_META, "last_applied")?;
            let membership: Option<Membership> = meta_get(&db, SM_META, "membership")?;
            Ok((last.flatten(), membership.unwrap_or_default()))
        })
        .await
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::None).map_err(io)?;
            let mut out = Vec::with_capacity(entries.len());
            let mut last = None;
            let mut membership = None;
            for entry in &entries {
                last = Some(entry.log_id);
                match &entry.payload {
                    EntryPayload::Blank => out.push(Ok(serde_json::Value::Null)),
                    EntryPayload::Normal(cmd) => out.push(store::apply(&txn, cmd).map_err(io)?),
                    EntryPayload::Membership(m) => {
                        membership = Some(Membership::new(Some(entry.log_id), m.clone()));
                        out.push(Ok(serde_json::Value::Null));
                    }
                }
            }
            {
                let mut t = txn.open_table(SM_META).map_err(io)?;
                if let Some(last) = last {
                    t.insert("last_applied", enc(&Some(last)).as_slice())
                        .map_err(io)?;
                }
                if let Some(m) = membership {
                    t.insert("membership", enc(&m).as_slice()).map_err(io)?;
                }
            }
            txn.commit().map_err(io)?;
            Ok(out)
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let db = self.db.clone();
        let meta = meta.clone();
        let data = snapshot.into_inner();
        blocking(move || {
            let txn = db.begin_write().map_err(io)?;
            store::snapshot::load(&txn, &data).map_err(io)?;
            {
                let mut t = txn.open_table(SM_META).map_err(io)?;
                t.insert("last_applied", enc(&meta.last_log_id).as_slice())
                    .map_err(io)?;
                t.insert("membership", enc(&meta.last_membership).as_slice())
                    .map_err(io)?;
            }
            {
                let mut t = txn.open_table(SNAPSHOT).map_err(io)?;
                t.insert("meta", enc(&meta).as_slice()).map_err(io)?;
                t.insert("data", data.as_slice()).map_err(io)?;
            }
            txn.commit().map_err(io)
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(io)?;
            let t = txn.open_table(SNAPSHOT).map_err(io)?;
            let meta = match t.get("meta").map_err(io)? {
                Some(v) => dec::<SnapshotMeta<NodeId, openraft::BasicNode>>(v.value())?,
                None => return Ok(None),
            };
            let data = t
                .get("data")
                .map_err(io)?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            Ok(Some(Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
        })
        .await
    }
}

/// Writes a backup into a fresh data dir as the state of a new one-voter cluster: the state
/// tables, and a snapshot at log index 0 so replicas that join later receive it.
pub fn restore_into(
    db: &Database,
    data: &[u8],
    node_id: NodeId,
    advertise: &str,
) -> Result<(), StoreError> {
    {
        let txn = db.begin_read()?;
        let log = txn.open_table(LOG)?;
        if log.first()?.is_some() {
            return Err(StoreError::Snapshot(
                "the data dir already holds a raft log; restore needs a fresh one".into(),
            ));
        }
    }
    let log_id = LogId::new(openraft::CommittedLeaderId::new(0, node_id), 0);
    let members = std::collections::BTreeMap::from([(
        node_id,
        openraft::BasicNode {
            addr: advertise.to_string(),
        },
    )]);
    let membership = Membership::new(
        Some(log_id),
        openraft::Membership::new(vec![members.keys().copied().collect()], members),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: membership.clone(),
        snapshot_id: format!("restore-{}", uuid::Uuid::new_v4().simple()),
    };
    let txn = db.begin_write()?;
    store::snapshot::load(&txn, data)?;
    {
        let mut t = txn.open_table(SM_META)?;
        t.insert("last_applied", enc(&Some(log_id)).as_slice())?;
        t.insert("membership", enc(&membership).as_slice())?;
    }
    txn.open_table(LOG_META)?
        .insert("last_purged", enc(&Some(log_id)).as_slice())?;
    {
        let mut t = txn.open_table(SNAPSHOT)?;
        t.insert("meta", enc(&meta).as_slice())?;
        t.insert("data", data)?;
    }
    txn.commit()?;
    Ok(())
}
