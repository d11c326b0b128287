//! The leader's lease on node presence: a replica that dies and never comes back would leave
//! its nodes "online" for good (a restart or a membership removal clears them, a dead pod
//! that is never replaced does neither). The leader probes every replica that holds presence
//! records and, once one has not answered for a whole lease, drops its records.
//!
//! A replica that was only cut off from the leader keeps its node sessions; each of them
//! writes its presence again with its next heartbeat (the controller sees its record gone).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Replica;
use crate::raft::NodeId;
use crate::store::Command;
use crate::store::model::Presence;

/// How often the leader looks.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs for the life of the replica; acts only while it leads.
pub fn spawn(replica: Arc<Replica>, lease: Duration) {
    let weak = Arc::downgrade(&replica);
    drop(replica);
    tokio::spawn(async move {
        // Replica → when it last answered (or when the leader started watching it).
        let mut answered: HashMap<NodeId, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(PROBE_EVERY.min(lease / 2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(replica) = weak.upgrade() else {
                return;
            };
            if !replica.is_leader() {
                answered.clear();
                continue;
            }
            let holders = match presence_holders(&replica) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("presence lease: cannot read presence records: {e}");
                    continue;
                }
            };
            answered.retain(|id, _| holders.contains(id));
            for holder in holders {
                let since = *answered.entry(holder).or_insert_with(Instant::now);
                if probe(&replica, holder).await {
                    answered.insert(holder, Instant::now());
                } else if since.elapsed() >= lease {
                    expire(&replica, holder, since.elapsed()).await;
                    answered.remove(&holder);
                }
            }
        }
    });
}

/// Other replicas that hold node presence records.
fn presence_holders(replica: &Replica) -> Result<Vec<NodeId>, crate::store::StoreError> {
    let mut holders: Vec<NodeId> = replica
        .reader()?
        .list::<Presence>("")?
        .into_iter()
        .map(|p| p.replica_id)
        .filter(|id| *id != replica.id)
        .collect();
    holders.sort_unstable();
    holders.dedup();
    Ok(holders)
}

/// Whether the replica answers on its peer address.
pub(super) async fn probe(replica: &Replica, holder: NodeId) -> bool {
    let addr = {
        let metrics = replica.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&holder)
            .map(|n| n.addr.clone())
    };
    // Not a member: nobody will ever answer for it.
    let Some(addr) = addr else {
        return false;
    };
    // Bounded as a whole too: the connect of a peer that blackholes packets included.
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, replica.status_of(&addr, PROBE_TIMEOUT)).await,
        Ok(Ok(_))
    )
}

async fn expire(replica: &Replica, holder: NodeId, silent: Duration) {
    match replica
        .propose(Command::PresenceDropReplica { replica_id: holder })
        .await
    {
        Ok(dropped) => tracing::warn!(
            "replica {holder} has not answered for {} s: dropped its {dropped} node presence \
             record(s)",
            silent.as_secs()
        ),
        Err(e) => tracing::warn!("presence lease: cannot drop replica {holder}'s records: {e}"),
    }
}
