//! openraft wiring: the type config, redb-backed log and state machine, the tonic network.

pub mod codec;
mod network;
mod storage;

// `declare_raft_types!` names its default snapshot type `Cursor<Vec<u8>>` unqualified.
use std::io::Cursor;

pub use network::Network;
pub use storage::{LogStore, StateMachine, open_database, restore_into};

use crate::store::{Applied, Command};

pub type NodeId = u64;

// One log entry carries every command proposed while the previous entry was being written:
// openraft 0.9 waits for each append's fsync before taking the next client write, so
// batching in the entry is what lets concurrent proposals share one fsync.
openraft::declare_raft_types!(
    pub TypeConfig:
        D = Vec<Command>,
        R = Vec<Applied>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type LogId = openraft::LogId<NodeId>;

/// Raft's timing: flags `--raft-heartbeat-ms`, `--raft-election-timeout-ms` (the minimum; the
/// maximum is twice it) and `--raft-snapshot-logs`. The defaults are sized for shared 2-core
/// machines: spurious elections under load cost more than a few hundred milliseconds of extra
/// failover time. The fault runner draws them at random per run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    /// Entries applied since the last snapshot that trigger a new one.
    pub snapshot_logs: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 100,
            election_timeout_min_ms: 400,
            snapshot_logs: 500,
        }
    }
}

impl Timing {
    /// How long after a quorum confirmed it a leader serves linearizable reads from its own
    /// state: half the minimum election timeout, so a newer leader cannot exist yet
    /// (followers that acknowledged do not vote before their election timeout runs out).
    pub fn read_lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.election_timeout_min_ms / 2)
    }

    /// Refuses timings under which leaders would lose their followers between heartbeats.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 3 > self.election_timeout_min_ms {
            return Err(format!(
                "the raft heartbeat ({} ms) must be at most a third of the election timeout ({} ms)",
                self.heartbeat_ms, self.election_timeout_min_ms
            ));
        }
        if self.snapshot_logs == 0 {
            return Err("--raft-snapshot-logs must be at least 1".into());
        }
        Ok(())
    }
}

pub fn config(timing: Timing) -> openraft::Config {
    openraft::Config {
        cluster_name: "fabric-master".into(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_timeout_min_ms,
        election_timeout_max: timing.election_timeout_min_ms * 2,
        install_snapshot_timeout: 10_000,
        // Entries are batches of up to 1,024 commands: keep the in-memory log small.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_logs),
        max_in_snapshot_log_to_keep: 100,
        max_payload_entries: 64,
        ..Default::default()
    }
}
