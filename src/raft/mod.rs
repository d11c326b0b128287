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

/// How long after a quorum acknowledged it a leader serves linearizable reads from its own
/// state: half the minimum election timeout, so a newer leader cannot exist yet (followers
/// that acknowledged do not vote before their election timeout runs out).
pub const READ_LEASE: std::time::Duration = std::time::Duration::from_millis(200);

/// Timeouts sized for shared 2-core machines: spurious elections under load cost more
/// than a few hundred milliseconds of extra failover time.
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "fabric-master".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        install_snapshot_timeout: 10_000,
        // Entries are batches of up to 1,024 commands: keep the in-memory log small.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(500),
        max_in_snapshot_log_to_keep: 100,
        max_payload_entries: 64,
        ..Default::default()
    }
}
