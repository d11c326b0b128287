//! The gauges of `/metrics` that are a view of the current state, read at each scrape:
//! sessions by realm and role, edge nodes online, the replica's Raft state and its file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::replica::Replica;
use crate::router::Router;
use crate::transport;

/// The role edge nodes join management realms with.
const NODE_ROLE: &str = "node";

pub struct StateGauges {
    pub router: Arc<Router>,
    pub replica: Arc<Replica>,
    /// The redb file, whose size is reported.
    pub state_file: PathBuf,
}

impl std::fmt::Debug for StateGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateGauges").finish_non_exhaustive()
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut by_realm_role: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut realms = 0;
        for name in self.router.realm_names() {
            let Some(realm) = self.router.realm(&name) else {
                continue;
            };
            realms += 1;
            let (label, by_role) = realm.sessions_by_role();
            for (role, n) in by_role {
                *by_realm_role.entry((label.clone(), role)).or_default() += n as i64;
            }
        }
        let total: i64 = by_realm_role.values().sum();
        let nodes: i64 = by_realm_role
            .iter()
            .filter(|((_, role), _)| role == NODE_ROLE)
            .map(|(_, n)| n)
            .sum();
        gauge(
            &mut encoder,
            "sessions",
            "Client sessions on this replica (the autoscaler's per-pod metric)",
            total,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "realm_sessions",
                "Client sessions on this replica by realm and authrole",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for ((realm, role), n) in &by_realm_role {
                let labels = [("realm", realm.as_str()), ("role", role.as_str())];
                ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "edge_nodes_online",
            "Edge nodes whose session this replica holds",
            nodes,
        )?;
        gauge(&mut encoder, "realms", "Realms this replica routes", realms)?;
        gauge(
            &mut encoder,
            "outbound_queued_bytes",
            "Bytes queued for this replica's sessions, not yet written to their sockets",
            transport::queued_total() as i64,
        )?;

        let s = self.replica.status();
        let last_log = s.last_log_index.unwrap_or(0);
        let applied = s.last_applied.unwrap_or(0);
        gauge(
            &mut encoder,
            "raft_is_leader",
            "1 on the leader",
            i64::from(s.leader == Some(s.id)),
        )?;
        gauge(
            &mut encoder,
            "raft_has_quorum",
            "1 while this replica can commit writes",
            i64::from(s.has_quorum),
        )?;
        gauge(
            &mut encoder,
            "raft_term",
            "Current Raft term",
            s.term as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_last_log_index",
            "Last log index this replica holds",
            last_log as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_last_applied",
            "Last log index applied to the state machine",
            applied as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_apply_lag",
            "Log entries held but not applied yet",
            last_log.saturating_sub(applied) as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_snapshot_index",
            "Log index of the last snapshot",
            s.snapshot.unwrap_or(0) as i64,
        )?;
        gauge(&mut encoder, "raft_voters", "Voters", s.voters.len() as i64)?;
        gauge(
            &mut encoder,
            "raft_learners",
            "Learners (non-voting replicas)",
            s.learners.len() as i64,
        )?;
        {
            let lag = self.replica.replication_lag();
            let mut family = encoder.encode_descriptor(
                "raft_replication_lag",
                "On the leader: log entries each member has yet to receive",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (peer, n) in lag {
                let peer = peer.to_string();
                let labels = [("peer", peer.as_str())];
                ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let file_bytes = std::fs::metadata(&self.state_file)
            .map(|m| m.len())
            .unwrap_or(0);
        gauge(
            &mut encoder,
            "store_file_bytes",
            "Size of this replica's redb file",
            file_bytes as i64,
        )?;
        Ok(())
    }
}
