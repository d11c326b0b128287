//! Exactly-once proposals. A follower forwards a write to the leader; when the leader dies
//! (or steps down) before it answers, the write may or may not have been committed, and the
//! follower proposes it again to the next leader. A create applied twice answers "already
//! exists", a delete "no such object", a compare-and-set "cannot start": a leader change
//! would be visible. So every proposal carries an id (`Command::Once`), and the state
//! machine remembers the answer of the last `WINDOW` ids; a repeated id gets the first
//! answer and changes nothing. The memory is replicated state: deterministic (pruned by a
//! sequence number, not by time) and part of every snapshot.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{ApplyError, StoreError};

pub const APPLIED_NAME: &str = "applied_proposals";
pub const APPLIED_BY_SEQ_NAME: &str = "applied_by_seq";
/// Proposal id → what applying it answered (`Remembered`, JSON).
pub const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new(APPLIED_NAME);
/// Zero-padded sequence number → proposal id, oldest first, for pruning.
pub const APPLIED_BY_SEQ: TableDefinition<&str, &str> = TableDefinition::new(APPLIED_BY_SEQ_NAME);

/// How many answers are remembered: far more proposals than can be retried while one is
/// in flight (a retry happens within one write timeout).
pub const WINDOW: u64 = 100_000;

/// The key under which APPLIED keeps the last sequence number (no proposal id starts with #).
const SEQ_KEY: &str = "#seq";

#[derive(Serialize, Deserialize)]
struct Remembered {
    seq: u64,
    /// None: applied, and the answer is the command's own record (an insert or upsert
    /// answers with what it stored), so it is not stored twice.
    #[serde(default)]
    answer: Option<Result<serde_json::Value, ApplyError>>,
}

/// What is remembered of an applied proposal.
pub enum Recalled {
    Answer(Result<serde_json::Value, ApplyError>),
    /// Applied; its answer is its own record.
    OwnRecord,
}

/// The answer given to `id` before, if it is remembered.
pub fn recall(txn: &WriteTransaction, id: &str) -> Result<Option<Recalled>, StoreError> {
    let table = txn.open_table(APPLIED)?;
    let Some(bytes) = table.get(id)? else {
        return Ok(None);
    };
    let remembered: Remembered =
        serde_json::from_slice(bytes.value()).map_err(|source| StoreError::Corrupt {
            table: APPLIED_NAME,
            source,
        })?;
    Ok(Some(match remembered.answer {
        Some(answer) => Recalled::Answer(answer),
        None => Recalled::OwnRecord,
    }))
}

/// Remembers `answer` for `id` (None: the command's own record), and forgets the answers
/// that fell out of the window.
pub fn remember(
    txn: &WriteTransaction,
    id: &str,
    answer: Option<&Result<serde_json::Value, ApplyError>>,
) -> Result<(), StoreError> {
    let mut applied = txn.open_table(APPLIED)?;
    let mut by_seq = txn.open_table(APPLIED_BY_SEQ)?;
    let seq = match applied.get(SEQ_KEY)? {
        Some(v) => u64::from_le_bytes(v.value().try_into().unwrap_or([0; 8])),
        None => 0,
    } + 1;
    applied.insert(SEQ_KEY, seq.to_le_bytes().as_slice())?;
    let bytes = serde_json::to_vec(&Remembered {
        seq,
        answer: answer.cloned(),
    })
    .expect("answers serialize");
    applied.insert(id, bytes.as_slice())?;
    let seq_key = format!("{seq:020}");
    by_seq.insert(seq_key.as_str(), id)?;
    if seq > WINDOW {
        let cutoff = format!("{:020}", seq - WINDOW);
        let old: Vec<(String, String)> = by_seq
            .range(..=cutoff.as_str())?
            .map(|item| item.map(|(k, v)| (k.value().to_owned(), v.value().to_owned())))
            .collect::<Result<_, _>>()?;
        for (k, old_id) in old {
            by_seq.remove(k.as_str())?;
            applied.remove(old_id.as_str())?;
        }
    }
    Ok(())
}
