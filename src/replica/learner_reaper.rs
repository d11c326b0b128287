//! The leader removes learners that are gone: a serving replica that died without leaving
//! (kill -9, a lost machine) would otherwise stay in the membership for good, and the leader
//! would keep replicating to nobody. One missed probe is not enough (a pause, a slow
//! machine): a learner is removed only once it has not answered for a whole `reap_after`
//! (`--learner-reap-ms`, 30 s by default), probed every second. Voters are never removed
//! here, only by an operator (`fabric-master cluster remove`): losing one changes the quorum.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Replica;
use super::presence_lease::probe;
use crate::raft::NodeId;

/// How often the leader probes its learners.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Runs for the life of the replica; acts only while it leads.
pub fn spawn(replica: Arc<Replica>, reap_after: Duration) {
    let weak = Arc::downgrade(&replica);
    drop(replica);
    tokio::spawn(async move {
        // Learner → when it last answered (or when this leader started watching it).
        let mut answered: HashMap<NodeId, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(
            PROBE_EVERY
                .min(reap_after / 2)
                .max(Duration::from_millis(10)),
        );
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
            let learners: Vec<NodeId> = replica.membership().learner_ids().collect();
            answered.retain(|id, _| learners.contains(id));
            for learner in learners {
                let since = *answered.entry(learner).or_insert_with(Instant::now);
                if probe(&replica, learner).await {
                    answered.insert(learner, Instant::now());
                } else if since.elapsed() >= reap_after {
                    tracing::warn!(
                        "learner {learner} has not answered for {} s: removing it",
                        since.elapsed().as_secs()
                    );
                    match replica.remove(learner).await {
                        Ok(_) => {
                            answered.remove(&learner);
                        }
                        Err(e) => tracing::warn!("removing learner {learner}: {e}"),
                    }
                }
            }
        }
    });
}
