//! The log and the stored snapshot never disagree on disk, whatever order openraft's purge and
//! the state machine's install of a received snapshot reach the file in.

use super::*;

fn log_id(index: u64) -> LogId {
    LogId::new(openraft::CommittedLeaderId::new(1, 1), index)
}

/// A database whose log holds entries 1..=`last` and whose stored snapshot covers `snapshot`.
fn db_with(last: u64, snapshot: u64) -> (tempfile::TempDir, Arc<Database>) {
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(&dir.path().join("state.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut log = txn.open_table(LOG).unwrap();
        for i in 1..=last {
            let entry = Entry::<TypeConfig> {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            };
            log.insert(i, enc(&entry).as_slice()).unwrap();
        }
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(snapshot)),
            last_membership: Membership::default(),
            snapshot_id: "old".into(),
        };
        let mut t = txn.open_table(SNAPSHOT).unwrap();
        t.insert("meta", enc(&meta).as_slice()).unwrap();
        t.insert("data", [].as_slice()).unwrap();
    }
    txn.commit().unwrap();
    (dir, db)
}

/// What the file says: the purged mark and the first entry left.
fn on_disk(db: &Database) -> (Option<u64>, Option<u64>) {
    let txn = db.begin_read().unwrap();
    let purged: Option<LogId> = txn
        .open_table(LOG_META)
        .unwrap()
        .get("last_purged")
        .unwrap()
        .map(|v| super::super::codec::decode(v.value()).unwrap())
        .unwrap_or(None);
    let first = txn
        .open_table(LOG)
        .unwrap()
        .first()
        .unwrap()
        .map(|(k, _)| k.value());
    (purged.map(|l| l.index), first)
}

/// Waits until the writer thread has committed everything queued before: it handles the
/// queue in order, and a vote is acknowledged only once written.
async fn flush(store: &mut LogStore) {
    store.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
}

/// openraft purges the log up to a received snapshot before the state machine has stored
/// it. The file used to record the purge first: killed then, the replica came back with a
/// log purged past its stored snapshot and state (found by the fault runner, a follower
/// killed 427 ms into a snapshot install: openraft refused to start, "expect: purge_upto
/// (536) <= snapshot_last_log_id (327)").
#[tokio::test]
async fn a_purge_never_passes_the_stored_snapshot() {
    let (_dir, db) = db_with(10, 3);
    let mut store = LogStore::open(db.clone()).unwrap();
    store.purge(log_id(8)).await.unwrap();
    flush(&mut store).await;
    assert_eq!(
        on_disk(&db),
        (Some(3), Some(4)),
        "only what the stored snapshot covers is forgotten"
    );
    // Where the snapshot reaches, the purge does.
    store.purge(log_id(2)).await.unwrap();
    flush(&mut store).await;
    assert_eq!(
        on_disk(&db),
        (Some(3), Some(4)),
        "the mark never moves back"
    );
}

/// The install stores the snapshot, the state it holds and the log purge in one commit.
#[tokio::test]
async fn installing_a_snapshot_purges_the_log_it_covers_in_the_same_commit() {
    let (_dir, db) = db_with(10, 3);
    let data = {
        let txn = db.begin_read().unwrap();
        store::snapshot::dump(&txn).unwrap()
    };
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(8)),
        last_membership: Membership::default(),
        snapshot_id: "received".into(),
    };
    StateMachine::new(db.clone())
        .install_snapshot(&meta, Box::new(Cursor::new(data)))
        .await
        .unwrap();
    assert_eq!(on_disk(&db), (Some(8), Some(9)));
    // openraft's own purge, arriving after, changes nothing; a later one goes no further
    // than the snapshot.
    let mut store = LogStore::open(db.clone()).unwrap();
    store.purge(log_id(8)).await.unwrap();
    store.purge(log_id(10)).await.unwrap();
    flush(&mut store).await;
    assert_eq!(on_disk(&db), (Some(8), Some(9)));
}

/// A file grown by a burst and freed again in its middle is given back at the next start,
/// its contents intact.
#[test]
fn a_large_state_file_is_compacted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let db = open_database(&path).unwrap();
    let value = vec![7u8; 20 << 10];
    // A burst, then something written after it, then the burst deleted: free pages in the
    // middle of the file, which closing it cannot cut off.
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(SNAPSHOT).unwrap();
        for i in 0..2400 {
            t.insert(format!("burst-{i}").as_str(), value.as_slice())
                .unwrap();
        }
    }
    txn.commit().unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(SNAPSHOT)
        .unwrap()
        .insert("kept", value.as_slice())
        .unwrap();
    txn.commit().unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(SNAPSHOT).unwrap();
        for i in 0..2400 {
            t.remove(format!("burst-{i}").as_str()).unwrap();
        }
    }
    txn.commit().unwrap();
    drop(db);
    let grown = path.metadata().unwrap().len();
    assert!(
        grown > COMPACT_ABOVE_BYTES,
        "the burst grew the file: {grown}"
    );
    let db = open_database(&path).unwrap();
    let now = path.metadata().unwrap().len();
    assert!(
        now < grown / 4,
        "compacted at start: {} MiB -> {} MiB",
        grown >> 20,
        now >> 20
    );
    let txn = db.begin_read().unwrap();
    let kept = txn
        .open_table(SNAPSHOT)
        .unwrap()
        .get("kept")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(kept, value);
}
