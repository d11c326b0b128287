//! The leader finishes a membership change that an earlier leader left in its joint stage
//! (see [`Replica::finish_joint_change`]). It looks whenever the Raft metrics change, so a
//! newly elected leader finishes its predecessor's change at once.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;

use super::Replica;

/// How long to wait before trying again after a failed attempt (no quorum yet, say).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs for the life of the replica; acts only while it leads.
pub fn spawn(replica: Arc<Replica>) {
    let weak = Arc::downgrade(&replica);
    let mut metrics = replica.raft.metrics();
    drop(replica);
    tokio::spawn(async move {
        loop {
            let half_done = {
                let m = metrics.borrow_and_update();
                m.state == ServerState::Leader
                    && m.membership_config.membership().get_joint_config().len() > 1
            };
            if half_done {
                let Some(replica) = weak.upgrade() else {
                    return;
                };
                match replica.finish_joint_change().await {
                    Ok(Some(voters)) => {
                        tracing::info!("membership change finished: voters {voters:?}")
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("finishing a half-done membership change: {e}");
                        drop(replica);
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                }
            }
            // The Raft instance is gone (the replica shut down) once its metrics stop.
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}
