//! Pinned fault scenarios: each reproduces a bug found by fault injection (issue 12) on real
//! replica processes on loopback, and fails on the code before its fix.
//!
//! 1. A leader frozen (SIGSTOP) while it handles a write, deposed meanwhile, answered a read
//!    that began after a newer acknowledged write with the old value: its read lease was
//!    measured with openraft's `millis_since_quorum_ack`, which a frozen process does not
//!    refresh.
//! 2. With the leader frozen, reads (and the writes of management calls, which read first)
//!    through the followers stalled for the whole write timeout although a new leader was
//!    elected within about a second: the shared read-index round waited for the old leader.
//! 3. A leader killed between the two commits of a membership change (openraft commits the
//!    joint config of old and new voters, then the new one) left the cluster in the joint
//!    config for good: no leader finished the change, and with voters {1,3} joined by 2, the
//!    loss of 1 left 2 and 3 unable to elect anyone (found by scenario 2, whose cluster was
//!    sometimes still in the joint stage of its last join).

mod common;

use std::time::Duration;

use common::*;
use fabric_master::replica::Query;
use fabric_master::rpc::{client, pb};
use fabric_master::store::model::Oid;
use fabric_master::store::{Command, Kind};
use std::process::Command as Process;

fn get(oid: Oid) -> Query {
    Query::Get {
        kind: Kind::Organization,
        key: oid.to_string(),
    }
}

async fn leader_of(replicas: &[Replica]) -> usize {
    for r in replicas {
        if r.child.is_some()
            && let Some(s) = status(&r.peer()).await
            && let Some(leader) = s.leader
            && let Some(i) = replicas.iter().position(|r| r.id == leader)
        {
            return i;
        }
    }
    panic!("no replica knows a leader");
}

/// Proposes through `peer` until a leader acknowledges (a new one may still be elected).
async fn propose_until_acknowledged(peer: &str, cmd: &Command) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(5), propose(peer, cmd)).await;
        if let Ok(Ok(_)) = attempt {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{peer}: no leader acknowledged a write within 30 s: {attempt:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scenario 1, as found: write to the leader, freeze it a moment later, write a newer value
/// through another replica until acknowledged, send a read to the frozen leader, thaw it.
/// The read began after the newer write was acknowledged, so it must see it (or fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_mid_write_never_answers_a_stale_read() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let replicas = three(root.path()).await;
    let (oid, create) = org(1);
    propose_until_acknowledged(&replicas[0].peer(), &create).await;
    let mut stale = Vec::new();
    for round in 0..4 {
        let l = leader_of(&replicas).await;
        let other = (l + 1) % replicas.len();
        let leader_peer = replicas[l].peer();
        // An open connection to the leader, so the read reaches it without a handshake.
        let mut reader = client(&leader_peer, None).unwrap();
        let warm = reader
            .query(pb::QueryRequest {
                query: serde_json::to_vec(&get(oid)).unwrap(),
            })
            .await;
        assert!(warm.is_ok(), "round {round}: {warm:?}");
        propose_until_acknowledged(&leader_peer, &relabel(oid, &format!("r{round}-a"))).await;

        let in_flight = {
            let peer = leader_peer.clone();
            let cmd = relabel(oid, &format!("r{round}-b"));
            tokio::spawn(async move { propose(&peer, &cmd).await })
        };
        std::thread::sleep(Duration::from_micros(300));
        signal(&replicas[l], "-STOP");
        let newest = format!("r{round}-c");
        propose_until_acknowledged(&replicas[other].peer(), &relabel(oid, &newest)).await;
        let read = tokio::spawn(async move {
            reader
                .query(pb::QueryRequest {
                    query: serde_json::to_vec(&get(oid)).unwrap(),
                })
                .await
        });
        // Let the request reach the frozen process's socket before it runs again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal(&replicas[l], "-CONT");
        let answer = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("the read is answered")
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(30), in_flight).await;
        if let Ok(reply) = answer {
            let result: Result<serde_json::Value, fabric_master::replica::QueryError> =
                serde_json::from_slice(&reply.into_inner().result).unwrap();
            if let Ok(org) = result {
                // The write still in flight to the frozen leader (b) may take effect after the
                // newest acknowledged one (the thawed leader forwards it to the new one): both
                // are answers a linearizable read may give; the value before them is not.
                let label = org["label"].as_str().unwrap_or_default().to_owned();
                if label != newest && label != format!("r{round}-b") {
                    stale.push(format!("round {round}: read {label:?} after {newest:?}"));
                }
            }
        }
        // The cluster settles before the next round (the thawed replica rejoins).
        wait_for(&replicas[other].peer(), "a leader", |s| s.leader.is_some()).await;
    }
    assert!(stale.is_empty(), "stale reads: {stale:?}");
}

/// Scenario 2: with the leader frozen for longer than it takes to elect another one (but
/// shorter than the write timeout), a read through a follower is answered while the old
/// leader is still frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_does_not_hold_up_reads_through_the_others() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let mut replicas = three(root.path()).await;
    // A write timeout far beyond the pause: the read must not wait it out.
    for r in replicas.iter_mut() {
        r.kill();
        r.formation = vec!["--write-timeout-ms".into(), "60000".into()];
        r.start();
    }
    wait_for(&replicas[0].peer(), "a leader", |s| s.leader.is_some()).await;
    let (oid, create) = org(2);
    propose_until_acknowledged(&replicas[0].peer(), &create).await;
    let l = leader_of(&replicas).await;
    let follower = replicas[(l + 1) % replicas.len()].peer();
    // The follower's read-index round is under way with the leader when it freezes.
    assert!(query(&follower, &get(oid)).await.is_ok());
    signal(&replicas[l], "-STOP");
    let read = {
        let follower = follower.clone();
        tokio::spawn(async move { query(&follower, &get(oid)).await })
    };
    // Generous: an election takes about a second; the old code waited for the full 60 s.
    let answered = tokio::time::timeout(Duration::from_secs(20), read).await;
    signal(&replicas[l], "-CONT");
    let Ok(answer) = answered else {
        let logs: Vec<String> = replicas
            .iter()
            .map(|r| format!("--- replica {}\n{}", r.id, r.log_tail(30)))
            .collect();
        panic!(
            "no answer to a read through a follower while the leader was frozen\n{}",
            logs.join("\n")
        );
    };
    let org = answer
        .unwrap()
        .unwrap_or_else(|e| panic!("the read fails instead of going to the new leader: {e}"));
    assert_eq!(org["oid"], oid.to_string());
}

/// Scenario 3: the leader (1) commits voter 2's joint config [{1,3},{1,2,3}] only with 3's
/// ack, so with 3 frozen the joint entry reaches 2 but cannot commit; then 1 dies. Whoever
/// leads next inherits the joint config from its log and must finish the change: after
/// that, 2 and 3 elect a leader without 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_change_cut_off_by_a_dead_leader_is_finished_by_the_next() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let mut r1 = Replica::new(1, root.path(), vec!["--bootstrap".into()]);
    r1.start();
    let p1 = r1.peer();
    wait_for(&p1, "a leader", |s| s.leader == Some(1)).await;
    let mut r3 = Replica::new(3, root.path(), vec!["--join".into(), p1.clone()]);
    r3.start();
    wait_for(&p1, "voters 1 and 3", |s| s.voter_sets == vec![vec![1, 3]]).await;
    let mut r2 = Replica::new(
        2,
        root.path(),
        vec!["--join".into(), p1.clone(), "--learner".into()],
    );
    r2.start();
    wait_for(&p1, "replica 2 as a learner", |s| s.learners == vec![2]).await;

    signal(&r3, "-STOP");
    // Blocks: the joint config needs 3's ack. It fails once 1 is killed.
    let mut promote = Process::new(env!("CARGO_BIN_EXE_fabric-master"))
        .args(["cluster", "--peer", &p1, "add", "--node-id", "2"])
        .args(["--addr", &r2.peer()])
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&r2.peer(), "the joint config on replica 2", |s| {
        s.voter_sets == vec![vec![1, 3], vec![1, 2, 3]]
    })
    .await;
    r1.kill();
    let _ = promote.kill();
    let _ = promote.wait();
    signal(&r3, "-CONT");
    r1.start();

    // The old code left [{1,3},{1,2,3}] here for good.
    let finished = wait_for(&r3.peer(), "the change finished by a leader", |s| {
        s.leader.is_some() && s.voter_sets == vec![vec![1, 2, 3]]
    })
    .await;
    let mut replicas = [r1, r2, r3];
    let leader = finished.leader.unwrap();
    let l = replicas.iter().position(|r| r.id == leader).unwrap();
    replicas[l].kill();
    let survivor = replicas[(l + 1) % 3].peer();
    wait_for(&survivor, "a leader elected by the other two", |s| {
        s.leader.is_some() && s.leader != Some(leader)
    })
    .await;
    let (_, create) = org(3);
    propose_until_acknowledged(&survivor, &create).await;
}
