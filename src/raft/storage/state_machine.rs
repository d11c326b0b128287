//! The state machine: applies committed entries to the state tables, builds and installs
//! snapshots, and writes a backup into a fresh data dir. It shares the replica's redb file
//! (and the helpers of `storage`) with the log.

use super::*;

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
}

impl StateMachine {
    pub fn new(db: Arc<Database>) -> StateMachine {
        StateMachine { db }
    }
}

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
    crate::metrics::meters().snapshot_built(data.len());
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

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Vec<Applied>>>
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
                    EntryPayload::Blank => out.push(Vec::new()),
                    EntryPayload::Normal(cmds) => {
                        let mut results = Vec::with_capacity(cmds.len());
                        for cmd in cmds {
                            results.push(store::apply(&txn, cmd).map_err(io)?);
                        }
                        out.push(results);
                    }
                    EntryPayload::Membership(m) => {
                        membership = Some(Membership::new(Some(entry.log_id), m.clone()));
                        out.push(Vec::new());
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
            // The log the snapshot covers goes in the same transaction: stored snapshot,
            // state and log never disagree, whenever a crash comes (see `LogOp::Purge`).
            if let Some(last) = meta.last_log_id {
                let mut log = txn.open_table(LOG).map_err(io)?;
                let mut log_meta = txn.open_table(LOG_META).map_err(io)?;
                purge_log_upto(&mut log, &mut log_meta, last).map_err(io)?;
            }
            txn.commit().map_err(io)?;
            crate::metrics::meters().snapshot_installed(data.len());
            Ok(())
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
