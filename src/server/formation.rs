//! How a replica enters its cluster on start: resume with its stored membership, form a new
//! cluster, join one through seeds (in the background: meanwhile it serves and says "not
//! ready"), or, as pod 0 of a StatefulSet, form one only if no other voter pod holds one.

use std::sync::Arc;
use std::time::Duration;

use super::Formation;
use crate::replica::{JoinAs, Replica, Survey};

/// Resumes with the stored membership, forms a new cluster, or joins one in the background
/// (meanwhile the replica serves and says "not ready").
pub(super) async fn enter_cluster(
    replica: &Arc<Replica>,
    formation: &Formation,
    role: JoinAs,
) -> anyhow::Result<()> {
    let id = replica.id;
    let advertise = &replica.advertise;
    if replica.raft.is_initialized().await? {
        tracing::info!("replica {id} resumes with its data ({advertise})");
        // A learner that left on its last stop is no longer a member: it asks again (a
        // no-op on the leader when it still is one).
        let learner = !replica.membership().voter_ids().any(|v| v == id);
        if let (true, Formation::Join(seeds)) = (learner, formation) {
            join_in_background(replica.clone(), seeds.clone(), role);
        }
        return Ok(());
    }
    match formation {
        Formation::Single | Formation::Bootstrap => {
            replica.bootstrap().await?;
            tracing::info!("replica {id} formed a new cluster ({advertise})");
        }
        Formation::Join(seeds) => join_in_background(replica.clone(), seeds.clone(), role),
        Formation::BootstrapUnlessFormed(others) => {
            bootstrap_unless_formed(replica.clone(), others.clone())
        }
    }
    Ok(())
}

/// Pod 0 of the voters' StatefulSet. At the first install every pod starts at once and
/// none has a cluster: pod 0 forms it. If pod 0 comes back with an empty volume while the
/// others hold the cluster, bootstrapping would make a second cluster under the same
/// Service (split brain): it joins theirs instead, as a replacement member. While some pod
/// does not answer, it cannot tell the two apart, and waits.
fn bootstrap_unless_formed(replica: Arc<Replica>, others: Vec<String>) {
    tokio::spawn(async move {
        loop {
            match replica.survey(&others).await {
                Survey::Formed(members) => {
                    tracing::info!("a cluster exists ({members:?}): joining it");
                    join_in_background(replica, members, JoinAs::VoterIfRoom);
                    return;
                }
                Survey::AllEmpty => {
                    match replica.bootstrap().await {
                        Ok(()) => tracing::info!("replica {} formed a new cluster", replica.id),
                        Err(e) => tracing::error!("forming the cluster: {e:#}"),
                    }
                    return;
                }
                Survey::Silent(silent) => tracing::info!(
                    "waiting for {silent:?} to answer before forming a cluster (a pod 0 \
                     with an empty volume must not form a second one)"
                ),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Asks the seeds in turn, once a second, until one takes this replica in.
fn join_in_background(replica: Arc<Replica>, seeds: Vec<String>, role: JoinAs) {
    tokio::spawn(async move {
        for attempt in 0u64.. {
            let seed = &seeds[(attempt as usize) % seeds.len()];
            match replica.join_via(seed, role).await {
                Ok(()) => {
                    tracing::info!("replica {} joined through {seed}", replica.id);
                    return;
                }
                Err(e) => tracing::warn!("joining through {seed}: {e:#}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
