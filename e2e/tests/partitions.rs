//! Network partitions with checked histories: three replica containers on a private network
//! (peer traffic, mutual TLS), each also on Docker's default bridge, where the test's clients
//! reach every replica, also one cut off from the others. Four clients write and read three
//! registers (organizations' labels) through random replicas while a seeded nemesis cuts one
//! replica (the leader half the time) off the cluster's network for 1–3 s, every 2–4 s. Each
//! key's history then goes through the linearizability checker of the loopback runner
//! (`tests/common/linearizability.rs`): an isolated old leader must never answer a read with
//! a value older than a write the majority acknowledged meanwhile.
//!
//! The same with five voters split again and again into random halves of 2 and 3, each half
//! talking within itself (`histories_under_random_halves_of_five_are_linearizable`).
//!
//! `PARTITION_SEEDS=5,6 HALVES_SEEDS=2,3 PARTITION_SECONDS=120 cargo test -p fabric-master-e2e --test partitions`
//! runs longer; needs the image (`bash docker/build.sh`).

mod common;
#[path = "../../tests/common/linearizability.rs"]
#[allow(dead_code)]
mod linearizability;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fabric_master::replica::{ProposeError, Query};
use fabric_master::store::Kind;
use fabric_master::store::model::Oid;
use linearizability::{Operation, RegOp, Verdict, check};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const KEYS: usize = 3;
const CLIENTS: usize = 4;

type History = Arc<parking_lot::Mutex<Vec<Vec<Operation>>>>;

#[allow(clippy::too_many_arguments)]
async fn client(
    id: usize,
    seed: u64,
    peers: Arc<Peers>,
    targets: Vec<String>,
    keys: Vec<Oid>,
    started: Instant,
    until: Instant,
    history: History,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let ns = |t: Instant| t.duration_since(started).as_nanos() as u64;
    let mut n = 0;
    while Instant::now() < until {
        let target = &targets[rng.gen_range(0..targets.len())];
        let k = rng.gen_range(0..keys.len());
        let invoke = Instant::now();
        let op = if rng.gen_bool(0.5) {
            n += 1;
            let value = format!("c{id}-{n}");
            let complete = match peers.propose(target, &relabel(keys[k], &value)).await {
                Ok(_) => Some(ns(Instant::now())),
                Err(ProposeError::Refused(_)) => continue,
                // No quorum, a timeout, a lost connection: it may yet take effect.
                Err(_) => None,
            };
            Operation {
                client: id,
                op: RegOp::Write(value),
                invoke: ns(invoke),
                complete,
            }
        } else {
            let q = Query::Get {
                kind: Kind::Organization,
                key: keys[k].to_string(),
            };
            match peers.query(target, &q).await {
                Ok(org) => Operation {
                    client: id,
                    op: RegOp::Read(org["label"].as_str().map(str::to_owned)),
                    invoke: ns(invoke),
                    complete: Some(ns(Instant::now())),
                },
                Err(_) => continue,
            }
        };
        history.lock()[k].push(op);
    }
}

/// How the nemesis partitions the cluster.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Three voters; one (the leader half the time) cut off from the others.
    OneCutOff,
    /// Five voters split into random halves of 2 and 3 (the leader in the smaller half half the
    /// time); each half talks within itself: the smaller one moves to a network of its own.
    RandomHalves,
}

async fn run(seed: u64, seconds: u64, shape: Shape) {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let network = format!("fabric-part-{suffix}");
    // Where the smaller half of a split talks among itself.
    let other_side = format!("fabric-part-{suffix}-b");
    let tls_dir = tempfile::tempdir().unwrap();
    let (replicas, peers) = match shape {
        Shape::OneCutOff => {
            let Three {
                replicas, peers, ..
            } = start_three(&network, &suffix, tls_dir.path()).await;
            (Vec::from(replicas), peers)
        }
        Shape::RandomHalves => {
            docker(&["network", "create", &other_side]);
            let Voters { replicas, peers } =
                start_voters(5, &network, &suffix, tls_dir.path()).await;
            (replicas, peers)
        }
    };
    let all: Vec<&Replica> = replicas.iter().collect();
    let r1 = all[0];
    let mut keys = Vec::new();
    for n in 0..KEYS {
        let (oid, cmd) = org(n as u64);
        peers.propose(&r1.peer, &cmd).await.expect("created");
        keys.push(oid);
    }
    let targets: Vec<String> = all.iter().map(|r| r.peer.clone()).collect();
    let history: History = Arc::new(parking_lot::Mutex::new(vec![Vec::new(); KEYS]));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                id,
                seed,
                peers.clone(),
                targets.clone(),
                keys.clone(),
                started,
                until,
                history.clone(),
            ))
        })
        .collect();

    // The nemesis: one replica at a time cut off the cluster's network, or the cluster split
    // in halves, then healed.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = Vec::new();
    while Instant::now() + Duration::from_secs(5) < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2000..4000))).await;
        let leader = peers.status(&r1.peer).await.and_then(|s| s.leader);
        if shape == Shape::RandomHalves {
            let mut order: Vec<usize> = (0..all.len()).collect();
            order.shuffle(&mut rng);
            if let Some(l) = leader.and_then(|l| all.iter().position(|r| r.id == l))
                && rng.gen_bool(0.5)
                && !order[..2].contains(&l)
            {
                let at = order.iter().position(|&i| i == l).unwrap();
                order.swap(0, at);
            }
            let smaller: Vec<&Replica> = order[..2].iter().map(|&i| all[i]).collect();
            let cut = Duration::from_millis(rng.gen_range(1000..3000));
            let ids: Vec<u64> = smaller.iter().map(|r| r.id).collect();
            let with_leader = leader.is_some_and(|l| ids.contains(&l));
            faults.push(format!(
                "replicas {ids:?}{} split from the others for {cut:?}",
                if with_leader {
                    " (with the leader)"
                } else {
                    ""
                }
            ));
            for r in &smaller {
                docker(&["network", "disconnect", &network, r.container.id()]);
                docker(&["network", "connect", &other_side, r.container.id()]);
            }
            tokio::time::sleep(cut).await;
            for r in &smaller {
                docker(&["network", "disconnect", &other_side, r.container.id()]);
                docker(&["network", "connect", &network, r.container.id()]);
            }
            continue;
        }
        let victim = match leader.and_then(|l| all.iter().position(|r| r.id == l)) {
            Some(l) if rng.gen_bool(0.5) => l,
            _ => rng.gen_range(0..all.len()),
        };
        let cut = Duration::from_millis(rng.gen_range(1000..3000));
        let was_leader = leader == Some(all[victim].id);
        faults.push(format!(
            "replica {}{} cut off for {cut:?}",
            all[victim].id,
            if was_leader { " (the leader)" } else { "" }
        ));
        docker(&[
            "network",
            "disconnect",
            &network,
            all[victim].container.id(),
        ]);
        tokio::time::sleep(cut).await;
        docker(&["network", "connect", &network, all[victim].container.id()]);
    }
    for c in clients {
        c.await.unwrap();
    }
    // Healed: every replica follows one leader again, and reads every key once more.
    for r in &all {
        peers
            .wait_for(&r.peer, "a leader and a quorum", |s| {
                s.leader.is_some() && s.has_quorum
            })
            .await;
    }
    tokio::spawn(client(
        CLIENTS,
        seed,
        peers.clone(),
        targets.clone(),
        keys.clone(),
        started,
        Instant::now() + Duration::from_secs(2),
        history.clone(),
    ))
    .await
    .unwrap();
    let history = history.lock().clone();
    let total: usize = history.iter().map(Vec::len).sum();
    let unknown = history
        .iter()
        .flatten()
        .filter(|o| o.complete.is_none())
        .count();
    println!(
        "seed {seed}: {total} operations ({unknown} with unknown outcome) over {seconds} s; faults: {faults:?}"
    );
    for (k, ops) in history.iter().enumerate() {
        match check(None, ops, Duration::from_secs(60)) {
            Verdict::Linearizable => {}
            Verdict::Unknown => println!("seed {seed}: key {k}: checker ran out of time"),
            Verdict::NotLinearizable(why) => panic!(
                "seed {seed}: key {k} ({} operations) is not linearizable under partitions: {why}",
                ops.len()
            ),
        }
    }
    assert!(
        faults.len() >= (seconds as usize / 8).max(1),
        "the nemesis ran: {faults:?}"
    );
    assert!(total > 100, "too few operations to check: {total}");
    if shape == Shape::RandomHalves {
        // Every split was healed: no container is on it any more (best effort).
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &other_side])
            .output();
    }
}

/// One cluster at a time: the machine has two cores.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Seeds from `var` (comma-separated), else `default`; seconds from `PARTITION_SECONDS`.
fn seeds_and_seconds(var: &str, default: u64) -> (Vec<u64>, u64) {
    let seeds = std::env::var(var)
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![default]);
    let seconds = std::env::var("PARTITION_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    (seeds, seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_partitions_are_linearizable() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let (seeds, seconds) = seeds_and_seconds("PARTITION_SEEDS", 1);
    for seed in seeds {
        run(seed, seconds, Shape::OneCutOff).await;
    }
}

/// Five voters split in random halves (2 | 3) again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_random_halves_of_five_are_linearizable() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let (seeds, seconds) = seeds_and_seconds("HALVES_SEEDS", 1);
    for seed in seeds {
        run(seed, seconds, Shape::RandomHalves).await;
    }
}
