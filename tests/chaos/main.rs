//! The fault runner: three replica processes on loopback, clients writing and reading
//! registers (the labels of organizations) through every replica at once, while a nemesis
//! kills (-9) and freezes (SIGSTOP) replicas, leader included, while learners join and leave,
//! follower voters are replaced by fresh replicas, replica 2's wall clock jumps hours
//! ahead or back (libfaketime), replica 3's disk (a tmpfs) fills up, replicas are killed
//! in the middle of a snapshot build or install (`storage_faults.rs`), and peer links turn
//! slow or stall (each replica advertises a proxy: `link_proxy.rs`); every key's recorded
//! history is then checked for linearizability (`common::linearizability`).
//!
//! On the peer port the registers are organizations' labels. Over WAMP (the management API,
//! `wamp_client.rs`) they are those labels, node pairings, a trace's status (a compare-and-set:
//! `start_trace`/`stop_trace`) and the workers of simulated edge nodes reached with
//! `remote.node.*` through whichever replica holds its session (`sim_node.rs`).
//!
//! Each seed also draws Raft's timing (heartbeat, election timeout, snapshot interval).
//! In CI: a fixed set of seeds, 20 s each. Longer runs, and a failing seed replayed:
//! `CHAOS_SEEDS=7,8 CHAOS_SECONDS=600 cargo test --release --test chaos -- --nocapture`.

mod checker;
#[path = "../common/mod.rs"]
mod common;
mod link_proxy;
mod membership;
mod peer_client;
mod sim_node;
mod storage_faults;
mod wamp_client;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::linearizability::{Operation, RegOp, Verdict, check};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use link_proxy::three_behind_proxies;
use membership::{Membership, nemesis};
use peer_client::client;
use storage_faults::SMALL_DISK_MIB;
use wamp_client::{set_up_chaos_mrealm, wamp_client};

/// libfaketime for threaded programs (Debian package `faketime`).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

const KEYS: usize = 3;
/// Pairing registers of the WAMP runs: nodes paired, unpaired and looked up by name.
const PAIRS: usize = 2;
/// The management realm of those nodes.
const CHAOS_MREALM: &str = "chaos";
/// The trace of that realm the WAMP runs start and stop: a compare-and-set register.
const CHAOS_TRACE: &str = "chaos-trace";
/// Simulated edge nodes of the WAMP runs, each joined to a replica of its own choosing.
const SIM_NODES: usize = 2;
/// Workers the WAMP runs start, stop and look up with `remote.*`, spread over the nodes.
const WORKERS: usize = 4;
/// Every register's value when the history begins.
const INITIAL: &str = "initial";

const CLIENTS: usize = 4;

/// What happened to one key, recorded by every client.
type History = Arc<parking_lot::Mutex<Vec<Vec<Operation>>>>;

/// The replicas clients go through: changed by the nemesis when it replaces a voter.
type Peers = Arc<parking_lot::RwLock<Vec<String>>>;

/// Starts a replica the nemesis stopped and records when: from a restart on, the checker
/// allows the restarted replica's recovery step (a trace marked `stopping_failed`).
fn restart(r: &mut Replica, restarts: &parking_lot::Mutex<Vec<Instant>>) {
    r.start();
    restarts.lock().push(Instant::now());
}

fn ws_url(r: &Replica) -> String {
    format!("ws://127.0.0.1:{}/ws", r.ws_port)
}

/// Raft's timing for a run, drawn from its seed: heartbeat 50–150 ms, election timeout 3–8
/// heartbeats (at least 300 ms on a shared machine), a snapshot every 20–1000 entries (so some
/// runs snapshot, and install snapshots, under faults).
fn timing(seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31) + 7);
    let heartbeat: u64 = rng.gen_range(50..=150);
    let election = (heartbeat * rng.gen_range(3..=8)).max(300);
    let snapshot: u64 = rng.gen_range(20..=1000);
    [
        ("--raft-heartbeat-ms", heartbeat),
        ("--raft-election-timeout-ms", election),
        ("--raft-snapshot-logs", snapshot),
    ]
    .into_iter()
    .flat_map(|(flag, v)| [flag.to_string(), v.to_string()])
    .collect()
}

/// How the clients reach the registers.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// `Modify` proposals and linearizable `Get` queries on the peer port.
    PeerPort,
    /// `modify_organization` / `get_organization` over WebSocket, as the superuser.
    Wamp,
}

async fn run(seed: u64, seconds: u64, via: Via) {
    let root = tempfile::tempdir().unwrap();
    // Every replica (and every one the nemesis adds) trusts the same superuser key.
    let superuser = ed25519_dalek::SigningKey::from_bytes(&[seed as u8 ^ 0x5a; 32]);
    let (_, su_pub) = fabric_master::auth::keyfile::write_key_pair(
        root.path(),
        "superuser",
        &superuser,
        "superuser",
    )
    .unwrap();
    let mut timing = timing(seed);
    timing.extend([
        "--superuser".to_string(),
        su_pub.to_str().unwrap().to_string(),
    ]);
    let (mut replicas, proxies) = three_behind_proxies(root.path(), &timing).await;
    let peers: Peers = Arc::new(parking_lot::RwLock::new(
        replicas.iter().map(|r| r.peer()).collect(),
    ));
    let urls: Peers = Arc::new(parking_lot::RwLock::new(
        replicas.iter().map(ws_url).collect(),
    ));
    let mut keys = Vec::new();
    for n in 0..KEYS {
        let (oid, create) = org(n as u64);
        propose(&replicas[0].peer(), &create)
            .await
            .expect("created");
        // Every register starts present with a value: absent reads as "no value".
        propose(&replicas[0].peer(), &relabel(oid, INITIAL))
            .await
            .expect("labelled");
        keys.push(oid);
    }
    // Replica 2 runs under libfaketime from here on, its wall clock moved by the nemesis.
    let clock_file = root.path().join("clock-of-replica-2");
    std::fs::write(&clock_file, "+0").unwrap();
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: apt-get install faketime (.ci/run does)"
    );
    replicas[1].kill();
    replicas[1].env.extend(
        [
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", clock_file.to_str().unwrap()),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    replicas[1].start();
    wait_for(
        &replicas[1].peer(),
        "replica 2 back under libfaketime",
        |s| s.has_quorum,
    )
    .await;
    // Replica 3 moves onto a small disk of its own, which the nemesis fills now and then.
    let small_disk = if std::env::var("FABRIC_SKIP_MOUNT").as_deref() == Ok("1") {
        None
    } else {
        let disk = SmallDisk::mount(&root.path().join("small"), SMALL_DISK_MIB);
        disk.take_in(&mut replicas[2]);
        wait_for(
            &replicas[2].peer(),
            "replica 3 back on the small disk",
            |s| s.has_quorum,
        )
        .await;
        Some(disk)
    };
    let mut membership = Membership {
        root: root.path().to_path_buf(),
        clock_file,
        timing: timing.clone(),
        next_id: 100,
        learner: None,
        small_disk,
        proxies,
    };
    // The WAMP runs' registers: organizations, pairings, the trace, the node's workers.
    let trace_register = KEYS + PAIRS;
    let registers = if via == Via::Wamp {
        trace_register + 1 + WORKERS
    } else {
        KEYS
    };
    let history: History = Arc::new(parking_lot::Mutex::new(vec![Vec::new(); registers]));
    let node_keys: Vec<ed25519_dalek::SigningKey> = (0..SIM_NODES)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[seed as u8 ^ (0x3c + i as u8); 32]))
        .collect();
    let node_oids = if via == Via::Wamp {
        set_up_chaos_mrealm(&ws_url(&replicas[0]), &superuser, &node_keys).await
    } else {
        Vec::new()
    };
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    // The simulated nodes outlive the clients, for the reads after healing.
    let node_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let nodes: Vec<_> = if via == Via::Wamp {
        node_keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                tokio::spawn(sim_node::run(
                    sim_node::sim_node_name(i),
                    key.clone(),
                    urls.clone(),
                    seed,
                    node_stop.clone(),
                ))
            })
            .collect()
    } else {
        Vec::new()
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| match via {
            Via::PeerPort => tokio::spawn(client(
                id,
                seed,
                peers.clone(),
                keys.clone(),
                started,
                until,
                history.clone(),
            )),
            Via::Wamp => tokio::spawn(wamp_client(
                id,
                seed,
                urls.clone(),
                superuser.clone(),
                keys.clone(),
                node_oids.clone(),
                started,
                until,
                history.clone(),
            )),
        })
        .collect();
    let restarts = parking_lot::Mutex::new(Vec::new());
    let faults = nemesis(
        &mut replicas,
        &mut membership,
        &peers,
        &urls,
        seed,
        until,
        &restarts,
    )
    .await;
    for c in clients {
        c.await.unwrap();
    }
    // Healed: every replica reads every key once more; these reads must fit the history too.
    healed(&mut replicas, seed, &faults).await;
    let final_reads = tokio::spawn(client(
        CLIENTS,
        seed,
        peers.clone(),
        keys.clone(),
        started,
        Instant::now() + Duration::from_secs(2),
        history.clone(),
    ));
    final_reads.await.unwrap();
    if via == Via::Wamp {
        // And through the management API: the trace, the node's workers, through every
        // replica (the node may have to join again first).
        wamp_client(
            CLIENTS,
            seed,
            urls.clone(),
            superuser.clone(),
            keys.clone(),
            node_oids.clone(),
            started,
            Instant::now() + Duration::from_secs(5),
            history.clone(),
        )
        .await;
    }
    node_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut node_joins = Vec::new();
    for n in nodes {
        node_joins.push(n.await.unwrap());
    }
    // A replica restarted after a kill finds the traces its earlier run left half-started or
    // half-stopped and makes them failed stops (`api/tracing`): after each restart, that may
    // happen (once), or not.
    if via == Via::Wamp {
        let mut h = history.lock();
        for (i, at) in restarts.lock().iter().enumerate() {
            h[trace_register].push(Operation {
                client: 1000 + i,
                op: RegOp::Cas {
                    from: vec!["starting".into(), "stopping".into()],
                    to: "stopping_failed".into(),
                    step: None,
                },
                invoke: at.duration_since(started).as_nanos() as u64,
                complete: None,
            });
        }
    }
    let history = history.lock().clone();
    let total: usize = history.iter().map(Vec::len).sum();
    let unknown: usize = history
        .iter()
        .flatten()
        .filter(|o| o.complete.is_none())
        .count();
    let acked = |f: fn(&RegOp) -> bool| {
        history
            .iter()
            .flatten()
            .filter(|o| o.complete.is_some() && f(&o.op))
            .count()
    };
    let (deletes, creates) = (
        acked(|o| matches!(o, RegOp::Delete)),
        acked(|o| matches!(o, RegOp::Create(_))),
    );
    let via_name = if via == Via::Wamp {
        format!(" (WAMP; the simulated nodes joined {node_joins:?} times)")
    } else {
        String::new()
    };
    println!(
        "seed {seed}{via_name}: {total} operations ({deletes} deletes and {creates} creates acknowledged) ({unknown} with unknown outcome) over {seconds} s; \
         timing {timing:?}; faults: {faults:?}"
    );
    if via == Via::Wamp {
        // What the trace and the node's workers went through: none of it may be vacuous.
        let acked_in = |range: std::ops::Range<usize>, f: fn(&RegOp) -> bool| {
            history[range]
                .iter()
                .flatten()
                .filter(|o| o.complete.is_some() && f(&o.op))
                .count()
        };
        let t = trace_register..trace_register + 1;
        let w = trace_register + 1..registers;
        let steps = acked_in(t.clone(), |o| matches!(o, RegOp::Cas { .. }));
        let refused = acked_in(t.clone(), |o| matches!(o, RegOp::CasRefused(_)));
        let started = acked_in(w.clone(), |o| matches!(o, RegOp::Create(_)));
        let stopped = acked_in(w.clone(), |o| matches!(o, RegOp::Delete));
        let seen = acked_in(w, |o| matches!(o, RegOp::Read(Some(_))));
        println!(
            "seed {seed}: the trace: {} starts and stops acknowledged, {refused} refused; \
             the node's workers through remote.*: {started} started, {stopped} stopped, \
             seen running {seen} times",
            steps / 2
        );
        assert!(
            steps > 0 && refused > 0 && started > 0 && stopped > 0 && seen > 0,
            "the trace and the remote registers were exercised"
        );
    }
    for (k, ops) in history.iter().enumerate() {
        // Organizations start labelled, the trace stopped; no node paired, no worker running.
        let initial = if k < KEYS {
            Some(INITIAL.to_string())
        } else if k == trace_register && via == Via::Wamp {
            Some("stopped".to_string())
        } else {
            None
        };
        match check(initial, ops, Duration::from_secs(60)) {
            Verdict::Linearizable => {}
            Verdict::Unknown => println!("seed {seed}: key {k}: checker ran out of time"),
            Verdict::NotLinearizable(why) => {
                panic!(
                    "seed {seed}: key {k} ({} operations) is not linearizable: {why}",
                    ops.len()
                )
            }
        }
    }
    // The two storage faults first (up to 15 s with their waits), then one fault per 1.5–3.5 s
    // pause plus its own duration.
    assert!(
        faults.len() >= (seconds as usize / 8).max(2),
        "the nemesis ran: {faults:?}"
    );
}

/// Waits (60 s at most) until every replica sees a leader and three voters; else fails with
/// what each replica says and the end of its log.
async fn healed(replicas: &mut [Replica], seed: u64, faults: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    'wait: while Instant::now() < deadline {
        for r in replicas.iter() {
            if !status(&r.peer()).await.is_some_and(|s| {
                s.leader.is_some() && s.voters.len() == 3 && s.voter_sets.len() == 1
            }) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue 'wait;
            }
        }
        return;
    }
    let mut report = String::new();
    for r in replicas.iter_mut() {
        let exited = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        let errors: Vec<String> = r
            .log_tail(2000)
            .lines()
            .filter(|l| !l.contains(" INFO "))
            .map(str::to_owned)
            .collect();
        report += &format!(
            "\nreplica {} (exited: {exited:?}), status {:?}:\n{}\n",
            r.id,
            status(&r.peer()).await,
            errors[errors.len().saturating_sub(15)..].join("\n")
        );
    }
    panic!("seed {seed}: not healed 60 s after the faults {faults:?}{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_kills_and_pauses_are_linearizable() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let seeds: Vec<u64> = std::env::var("CHAOS_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let seconds = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for seed in seeds {
        run(seed, seconds, Via::PeerPort).await;
    }
}

/// The same faults, the clients going through the management API over WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wamp_histories_under_faults_are_linearizable() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let seeds: Vec<u64> = std::env::var("CHAOS_WAMP_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![5]);
    let seconds = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for seed in seeds {
        run(seed, seconds, Via::Wamp).await;
    }
}
