//! Faults on a cluster of fabric-master containers (the image of `docker/build.sh`), on a
//! private Docker network of their own, with mutual TLS among the replicas. While a writer
//! keeps proposing through the replicas the test considers alive, the nemesis:
//! kills the leader (SIGKILL) and brings it back, freezes a follower (`docker pause`),
//! cuts the leader off the network (a partition: the isolated old leader refuses writes and
//! reads with a clear error, the majority goes on), heals it, and adds a learner that serves
//! a write and a read and leaves on SIGTERM. At the end every acknowledged write is read back
//! on every replica.
//!
//! Each container is also on Docker's default `bridge` network, where container names do not
//! resolve: the test reaches every replica there, also one cut off from the cluster's network,
//! and no peer traffic can cross it.
//!
//! Needs the image: `bash docker/build.sh`, then `cargo test -p fabric-master-e2e`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fabric_master::replica::{ProposeError, Query};
use fabric_master::store::Kind;
use fabric_master::store::model::Oid;

/// Proposes organizations through the replicas in `targets`, in turn, until stopped; keeps
/// the oids of the acknowledged writes. Failures are expected while the nemesis works.
struct Writer {
    targets: parking_lot::Mutex<Vec<String>>,
    acked: parking_lot::Mutex<Vec<Oid>>,
    failed: std::sync::atomic::AtomicU64,
    stop: AtomicBool,
}

impl Writer {
    fn acked(&self) -> usize {
        self.acked.lock().len()
    }

    async fn run(self: Arc<Self>, peers: Arc<Peers>) {
        let mut n = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let targets = self.targets.lock().clone();
            let target = &targets[(n as usize) % targets.len()];
            n += 1;
            let (oid, cmd) = org(n);
            match peers.propose(target, &cmd).await {
                Ok(_) => self.acked.lock().push(oid),
                Err(_) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Waits (bounded) until `more` further writes were acknowledged.
    async fn progress(&self, more: usize, phase: &str) {
        let goal = self.acked() + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked() < goal {
            assert!(
                Instant::now() < deadline,
                "{phase}: fewer than {more} writes acknowledged within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn leader_of(peers: &Peers, replicas: &[&Replica]) -> u64 {
    let s = peers
        .wait_for(&replicas[0].peer, "a leader among the live replicas", |s| {
            s.leader.is_some_and(|l| replicas.iter().any(|r| r.id == l))
        })
        .await;
    s.leader.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_a_docker_cluster_lose_no_acknowledged_write() {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let network = format!("fabric-faults-{suffix}");
    let tls_dir = tempfile::tempdir().unwrap();

    // Three voters: 1 forms the cluster, 2 and 3 join it.
    let Three {
        replicas: [r1, r2, r3],
        seed,
        peers,
    } = start_three(&network, &suffix, tls_dir.path()).await;
    let all = [&r1, &r2, &r3];

    let writer = Arc::new(Writer {
        targets: parking_lot::Mutex::new(all.iter().map(|r| r.peer.clone()).collect()),
        acked: parking_lot::Mutex::new(Vec::new()),
        failed: Default::default(),
        stop: AtomicBool::new(false),
    });
    let writing = tokio::spawn(writer.clone().run(peers.clone()));
    writer.progress(20, "start").await;
    let by_id = |id: u64| *all.iter().find(|r| r.id == id).unwrap();
    let set_targets =
        |rs: &[&Replica]| *writer.targets.lock() = rs.iter().map(|r| r.peer.clone()).collect();

    // 1. kill -9 of the leader; the others go on; it comes back on its data.
    let leader = by_id(leader_of(&peers, &all).await);
    let rest: Vec<&Replica> = all.iter().copied().filter(|r| r.id != leader.id).collect();
    set_targets(&rest);
    docker(&["kill", "-s", "KILL", leader.container.id()]);
    writer.progress(20, "after kill -9 of the leader").await;
    docker(&["start", leader.container.id()]);
    peers
        .wait_for(&leader.peer, "the killed leader back with a quorum", |s| {
            s.has_quorum
        })
        .await;
    set_targets(&all);
    writer.progress(10, "after the restart").await;

    // 2. A frozen follower.
    let leader_id = leader_of(&peers, &all).await;
    let follower = *all.iter().find(|r| r.id != leader_id).unwrap();
    let rest: Vec<&Replica> = all
        .iter()
        .copied()
        .filter(|r| r.id != follower.id)
        .collect();
    set_targets(&rest);
    docker(&["pause", follower.container.id()]);
    writer.progress(20, "with a paused follower").await;
    docker(&["unpause", follower.container.id()]);
    set_targets(&all);
    writer.progress(10, "after unpause").await;

    // 3. The leader cut off from the cluster's network: a minority of one.
    let old = by_id(leader_of(&peers, &all).await);
    let majority: Vec<&Replica> = all.iter().copied().filter(|r| r.id != old.id).collect();
    set_targets(&majority);
    docker(&["network", "disconnect", &network, old.container.id()]);
    writer
        .progress(20, "with the leader partitioned away")
        .await;
    let new_leader = leader_of(&peers, &majority).await;
    assert_ne!(new_leader, old.id);
    // The isolated replica refuses with a clear error; nothing it refused may appear later.
    let (refused, cmd) = org(1_000_000);
    let answer = peers.propose(&old.peer, &cmd).await;
    assert!(
        matches!(
            answer,
            Err(ProposeError::NoQuorum(_) | ProposeError::Timeout(_))
        ),
        "a write through the isolated old leader: {answer:?}"
    );
    let read = peers
        .query(
            &old.peer,
            &Query::Count {
                kind: Kind::Organization,
            },
        )
        .await;
    assert!(
        read.as_ref().is_err_and(|e| e.contains("no quorum")),
        "a linearizable read on the isolated old leader: {read:?}"
    );
    docker(&["network", "connect", &network, old.container.id()]);
    peers
        .wait_for(
            &old.peer,
            "the healed replica following the new leader",
            |s| s.leader.is_some_and(|l| l != old.id) && s.has_quorum,
        )
        .await;
    set_targets(&all);
    writer.progress(10, "after healing").await;

    // 4. A learner joins, serves a write and a read, and leaves on SIGTERM.
    let r4 = Replica::start(
        4,
        &network,
        &suffix,
        tls_dir.path(),
        ("FABRIC_JOIN", seed.clone()),
    )
    .await;
    peers
        .wait_for(&r1.peer, "replica 4 as a learner", |s| {
            s.learners == vec![4]
        })
        .await;
    let (oid, cmd) = org(2_000_000);
    peers
        .propose(&r4.peer, &cmd)
        .await
        .expect("a write through the learner");
    writer.acked.lock().push(oid);
    let through_learner = peers
        .query(
            &r4.peer,
            &Query::Get {
                kind: Kind::Organization,
                key: oid.to_string(),
            },
        )
        .await
        .expect("a read through the learner");
    assert!(
        !through_learner.is_null(),
        "the learner reads its own write back"
    );
    docker(&["stop", "-t", "30", r4.container.id()]);
    peers
        .wait_for(&r1.peer, "replica 4 gone from the membership", |s| {
            s.learners.is_empty() && !s.nodes.contains_key(&4)
        })
        .await;

    writer.stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    let acked: Vec<Oid> = writer.acked.lock().clone();
    let failed = writer.failed.load(Ordering::Relaxed);

    // Every acknowledged write is on every replica; the refused one is nowhere.
    for r in all {
        peers.wait_for(&r.peer, "a quorum", |s| s.has_quorum).await;
        let mut missing = BTreeSet::new();
        for oid in &acked {
            let got = peers
                .query(
                    &r.peer,
                    &Query::Get {
                        kind: Kind::Organization,
                        key: oid.to_string(),
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("reading {oid} on replica {}: {e}", r.id));
            if got.is_null() {
                missing.insert(*oid);
            }
        }
        assert!(
            missing.is_empty(),
            "replica {} lost acknowledged writes: {missing:?}",
            r.id
        );
        let got = peers
            .query(
                &r.peer,
                &Query::Get {
                    kind: Kind::Organization,
                    key: refused.to_string(),
                },
            )
            .await
            .unwrap();
        assert!(
            got.is_null(),
            "replica {} holds a write that was refused",
            r.id
        );
    }
    println!(
        "{} acknowledged writes read back on 3 replicas; {failed} writes failed during faults",
        acked.len()
    );
}
