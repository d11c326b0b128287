//! What a replica takes from the peer port or its own log: a batch of state machine commands
//! (msgpack). Decoding never panics, and every command that decodes is applied to a real (in
//! memory) redb store without panicking: a refusal or an error, never a crash that would stop
//! every replica applying the same entry.
#![no_main]

use std::sync::LazyLock;

use fabric_master::store::{Command, apply, create_tables};
use libfuzzer_sys::fuzz_target;
use redb::backends::InMemoryBackend;

static DB: LazyLock<redb::Database> = LazyLock::new(|| {
    let db = redb::Database::builder()
        .create_with_backend(InMemoryBackend::new())
        .expect("an in-memory database");
    let txn = db.begin_write().expect("a write transaction");
    create_tables(&txn).expect("the tables");
    txn.commit().expect("committed");
    db
});

fuzz_target!(|data: &[u8]| {
    let Ok(commands) = fabric_master::raft::codec::decode::<Vec<Command>>(data) else {
        return;
    };
    let txn = DB.begin_write().expect("a write transaction");
    for cmd in &commands {
        let _ = apply(&txn, cmd);
    }
    // Each input starts from the same state: nothing is committed.
    txn.abort().expect("aborted");
});
