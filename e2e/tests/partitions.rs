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
//! talking within itself (`histories_under_random_halves_of_five_are_linearizable`), and with
//! five voters under faults of single links (`common::links`, iptables in the containers'
//! namespaces): bridges, one-way cuts (a replica deaf or mute to its peers) and lossy links
//! (`histories_under_one_way_bridged_and_lossy_links_are_linearizable`).
//!
//! `PARTITION_SEEDS=5,6 HALVES_SEEDS=2,3 LINKS_SEEDS=4 PARTITION_SECONDS=120 cargo test -p fabric-master-e2e --test partitions`
//! runs longer; needs the image (`bash docker/build.sh`).

mod common;
#[path = "../../tests/common/linearizability.rs"]
#[allow(dead_code)]
mod linearizability;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::links::{Links, cut_between};
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
    /// Five voters; each fault one of: a bridge (two pairs cut apart, one replica that sees
    /// both), a deaf replica (hears no peer, is heard by all), a mute one (heard by none,
    /// hears all), every link losing a random share of its packets. The leader is the deaf or
    /// mute one, or on a side of the bridge, half the time.
    Links,
}

impl Shape {
    fn voters(self) -> u64 {
        match self {
            Shape::OneCutOff => 3,
            Shape::RandomHalves | Shape::Links => 5,
        }
    }
}

/// Breaks the cluster's network one way at a time and heals it.
struct Nemesis<'a> {
    shape: Shape,
    replicas: Vec<&'a Replica>,
    /// Each replica's incoming peer links (`Shape::Links` only).
    links: Vec<Links>,
    network: String,
    /// Where the smaller half of a split talks among itself.
    other_side: String,
    rng: StdRng,
}

impl Nemesis<'_> {
    /// Replica indexes in random order, the leader's first half the time.
    fn shuffled(&mut self, leader: Option<u64>) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.replicas.len()).collect();
        order.shuffle(&mut self.rng);
        if let Some(l) = leader.and_then(|l| self.replicas.iter().position(|r| r.id == l))
            && self.rng.gen_bool(0.5)
        {
            let at = order.iter().position(|&i| i == l).unwrap();
            order.swap(0, at);
        }
        order
    }

    fn ids(&self, indexes: &[usize]) -> Vec<u64> {
        indexes.iter().map(|&i| self.replicas[i].id).collect()
    }

    /// One fault, held for 1–3 s and healed; says what it was.
    async fn strike(&mut self, leader: Option<u64>) -> String {
        let order = self.shuffled(leader);
        let cut = Duration::from_millis(self.rng.gen_range(1000..3000));
        let with_leader = |ids: &[u64]| {
            if leader.is_some_and(|l| ids.contains(&l)) {
                " (with the leader)"
            } else {
                ""
            }
        };
        let what = match self.shape {
            Shape::OneCutOff => {
                let victim = self.replicas[order[0]];
                docker(&[
                    "network",
                    "disconnect",
                    &self.network,
                    victim.container.id(),
                ]);
                tokio::time::sleep(cut).await;
                docker(&["network", "connect", &self.network, victim.container.id()]);
                let ids = [victim.id];
                format!("replica {}{} cut off", victim.id, with_leader(&ids))
            }
            Shape::RandomHalves => {
                let smaller = [self.replicas[order[0]], self.replicas[order[1]]];
                for r in smaller {
                    docker(&["network", "disconnect", &self.network, r.container.id()]);
                    docker(&["network", "connect", &self.other_side, r.container.id()]);
                }
                tokio::time::sleep(cut).await;
                for r in smaller {
                    docker(&["network", "disconnect", &self.other_side, r.container.id()]);
                    docker(&["network", "connect", &self.network, r.container.id()]);
                }
                let ids = self.ids(&order[..2]);
                format!(
                    "replicas {ids:?}{} split from the others",
                    with_leader(&ids)
                )
            }
            Shape::Links => {
                let pick =
                    |ix: &[usize]| -> Vec<&Links> { ix.iter().map(|&i| &self.links[i]).collect() };
                let what = match self.rng.gen_range(0..4) {
                    0 => {
                        cut_between(&pick(&order[..2]), &pick(&order[3..]));
                        let (a, b) = (self.ids(&order[..2]), self.ids(&order[3..]));
                        format!(
                            "a bridge: {a:?}{} cut from {b:?}, {} sees both",
                            with_leader(&a),
                            self.replicas[order[2]].id
                        )
                    }
                    1 => {
                        self.links[order[0]].drop_from(&pick(&order[1..]));
                        let ids = self.ids(&order[..1]);
                        format!("replica {ids:?}{} deaf to its peers", with_leader(&ids))
                    }
                    2 => {
                        for &i in &order[1..] {
                            self.links[i].drop_from(&pick(&order[..1]));
                        }
                        let ids = self.ids(&order[..1]);
                        format!("replica {ids:?}{} mute to its peers", with_leader(&ids))
                    }
                    _ => {
                        let share = self.rng.gen_range(0.1..0.5);
                        for i in 0..self.links.len() {
                            let others: Vec<usize> =
                                (0..self.links.len()).filter(|&j| j != i).collect();
                            self.links[i].lose_from(&pick(&others), share);
                        }
                        format!(
                            "every peer link losing {:.0} % of its packets",
                            share * 100.0
                        )
                    }
                };
                tokio::time::sleep(cut).await;
                for l in &self.links {
                    l.heal();
                }
                what
            }
        };
        format!("{what} for {cut:?}")
    }
}

async fn run(seed: u64, seconds: u64, shape: Shape) {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let network = format!("fabric-part-{suffix}");
    let other_side = format!("fabric-part-{suffix}-b");
    if shape == Shape::RandomHalves {
        docker(&["network", "create", &other_side]);
    }
    let tls_dir = tempfile::tempdir().unwrap();
    let Voters { replicas, peers } =
        start_voters(shape.voters(), &network, &suffix, tls_dir.path()).await;
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

    let links = match shape {
        Shape::Links => all.iter().map(|r| Links::new(r, &network)).collect(),
        _ => Vec::new(),
    };
    let mut nemesis = Nemesis {
        shape,
        replicas: all.clone(),
        links,
        network: network.clone(),
        other_side: other_side.clone(),
        rng: StdRng::seed_from_u64(seed),
    };
    let mut faults = Vec::new();
    while Instant::now() + Duration::from_secs(5) < until {
        let pause = nemesis.rng.gen_range(2000..4000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let leader = peers.status(&r1.peer).await.and_then(|s| s.leader);
        faults.push(nemesis.strike(leader).await);
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

/// Five voters under one-way cuts, bridges and lossy links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_one_way_bridged_and_lossy_links_are_linearizable() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let (seeds, seconds) = seeds_and_seconds("LINKS_SEEDS", 1);
    for seed in seeds {
        run(seed, seconds, Shape::Links).await;
    }
}
