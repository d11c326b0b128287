//! A replica that stops on purpose (SIGTERM) tidies up first: a learner leaves the
//! membership (nobody should keep replicating to it, and a scale-in must not wait for the
//! reaper), a leader hands leadership to an up-to-date voter (the cluster does not sit out
//! an election timeout without a leader). A voter stays a member: voters are only removed by
//! an operator, since removing one changes the quorum.

use std::time::{Duration, Instant};

use super::Replica;
use crate::raft::NodeId;
use crate::rpc::pb;

/// How long a learner tries to leave before it exits anyway (the reaper removes it then).
const LEAVE_WITHIN: Duration = Duration::from_secs(5);

impl Replica {
    /// Leaves (a learner) or hands over leadership (a leader) before the replica stops.
    pub async fn depart(&self) {
        let membership = self.membership();
        if membership.learner_ids().any(|l| l == self.id) {
            match tokio::time::timeout(LEAVE_WITHIN, self.remove(self.id)).await {
                Ok(Ok(_)) => tracing::info!("learner {} left the cluster", self.id),
                Ok(Err(e)) => tracing::warn!("learner {} could not leave: {e}", self.id),
                Err(_) => tracing::warn!(
                    "learner {} could not leave within {} s; the leader reaps it later",
                    self.id,
                    LEAVE_WITHIN.as_secs()
                ),
            }
        } else if self.is_leader() {
            self.hand_over_leadership().await;
        }
    }

    /// Asks the most up-to-date other voter to start an election, which it wins with a log
    /// as long as ours (openraft 0.9 has no transfer-leader call); bounded by a few
    /// election timeouts.
    async fn hand_over_leadership(&self) {
        let election = Duration::from_millis(self.timing.election_timeout_min_ms * 2);
        let deadline = Instant::now() + election * 3;
        while Instant::now() < deadline {
            let Some((target, addr)) = self.successor() else {
                tracing::info!("leader {} has no other voter to hand over to", self.id);
                return;
            };
            let asked = match self.clients.get(&addr) {
                Ok(mut client) => {
                    let mut request = tonic::Request::new(pb::ElectRequest {});
                    request.set_timeout(election);
                    client.trigger_elect(request).await.map(|_| ())
                }
                Err(e) => Err(tonic::Status::unavailable(e.to_string())),
            };
            if let Err(e) = asked {
                tracing::warn!("asking replica {target} to take over: {}", e.message());
            }
            let round_end = Instant::now() + election;
            while Instant::now() < round_end {
                if !self.is_leader() {
                    tracing::info!("leader {} handed over to replica {target}", self.id);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tracing::warn!(
            "leader {} could not hand over; the cluster elects anew",
            self.id
        );
    }

    /// The other voter whose log matches ours furthest, with its address.
    fn successor(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let replication = m.replication.as_ref()?;
        membership
            .voter_ids()
            .filter(|v| *v != self.id)
            .max_by_key(|v| replication.get(v).cloned().flatten().map(|l| l.index))
            .and_then(|v| membership.get_node(&v).map(|n| (v, n.addr.clone())))
    }
}
