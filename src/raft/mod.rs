//! openraft wiring: the type config, redb-backed log and state machine, the tonic network.

mod network;
mod storage;

use std::io::Cursor;

pub use network::Network;
pub use storage::{LogStore, StateMachine, open_database, restore_into};

use crate::store::{Applied, Command};

pub type NodeId = u64;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Applied,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub type LogId = openraft::LogId<NodeId>;

/// Timeouts sized for shared 2-core machines: spurious elections under load cost more
/// than a few hundred milliseconds of extra failover time.
pub fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "fabric-master".into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
        max_in_snapshot_log_to_keep: 1_000,
        max_payload_entries: 1_000,
        ..Default::default()
    }
}

#[allow(dead_code)]
type SnapshotData = Cursor<Vec<u8>>;
