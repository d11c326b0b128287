//! Exactly-once proposals. A follower forwards a write to the leader; when the leader dies
//! (or steps down) before it answers, the write may or may not have been committed, and the
//! follower proposes it again to the next leader. A create applied twice answers "already
//! exists", a delete "no such object", a compare-and-set "cannot start": a leader change
//! would be visible. So every proposal carries an id (`Command::Once`), and the state
//! machine remembers the answers of recent ids; a repeated id gets the first answer and
//! changes nothing. The memory is replicated state, part of every snapshot, and pruned
//! deterministically: by a sequence number (at most `WINDOW` answers) and by the proposers'
//! clocks as the log carries them (answers older than `RETAIN_MS` before the proposal being
//! applied are forgotten), never by the applying replica's own clock.
//!
//! Both bounds matter: by count alone, a master doing tens of writes a second kept growing
//! for more than an hour before its window filled (found by the soak); by time alone, a
//! burst could hold millions.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{ApplyError, StoreError};

pub const APPLIED_NAME: &str = "applied_proposals";
pub const APPLIED_BY_SEQ_NAME: &str = "applied_by_seq";
/// Proposal id → what applying it answered (`Remembered`, JSON).
pub const APPLIED: TableDefinition<&str, &[u8]> = TableDefinition::new(APPLIED_NAME);
/// Zero-padded sequence number → proposal id, oldest first, for pruning.
pub const APPLIED_BY_SEQ: TableDefinition<&str, &str> = TableDefinition::new(APPLIED_BY_SEQ_NAME);

/// At most this many answers are remembered: far more proposals than can be retried while
/// one is in flight (a retry happens within one write timeout).
pub const WINDOW: u64 = 100_000;

/// Answers are kept this long after their proposal (by the proposers' clocks): many write
/// timeouts, and margin for clocks that disagree by minutes.
pub const RETAIN_MS: u64 = 10 * 60 * 1000;

/// The key under which APPLIED keeps the last sequence number (no proposal id starts with #).
const SEQ_KEY: &str = "#seq";

#[derive(Serialize, Deserialize)]
struct Remembered {
    seq: u64,
    /// The proposal's `at_ms`, if it carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_ms: Option<u64>,
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
/// that fell out of the window: more than `WINDOW` proposals ago, or proposed more than
/// `RETAIN_MS` before `at_ms`.
pub fn remember(
    txn: &WriteTransaction,
    id: &str,
    at_ms: Option<u64>,
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
        at_ms,
        answer: answer.cloned(),
    })
    .expect("answers serialize");
    applied.insert(id, bytes.as_slice())?;
    let seq_key = format!("{seq:020}");
    by_seq.insert(seq_key.as_str(), id)?;
    // Oldest first: each answer is forgotten once, so this costs O(1) per proposal on average.
    loop {
        let Some((k, old_id)) = by_seq
            .first()?
            .map(|(k, v)| (k.value().to_owned(), v.value().to_owned()))
        else {
            break;
        };
        let old_seq: u64 = k.parse().unwrap_or(0);
        let expired = old_seq + WINDOW <= seq
            || match (at_ms, applied.get(old_id.as_str())?) {
                (Some(now), Some(v)) => serde_json::from_slice::<Remembered>(v.value())
                    .ok()
                    .and_then(|r| r.at_ms)
                    .is_some_and(|then| then.saturating_add(RETAIN_MS) < now),
                _ => false,
            };
        if !expired || old_id == id {
            break;
        }
        by_seq.remove(k.as_str())?;
        applied.remove(old_id.as_str())?;
    }
    Ok(())
}
