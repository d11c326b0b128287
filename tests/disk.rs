//! Crash safety of the redb file: a replica killed (-9) at random points while it commits
//! loses no acknowledged write, and a file damaged outside redb (truncated, bits flipped) is
//! refused at start with a clear error, never served.
//!
//! One voter, so that nothing can be recovered from peers: what survives is what the file
//! kept. Seeded; `DISK_SEED=n DISK_ITERATIONS=n cargo test --test disk` runs longer.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::*;
use fabric_master::replica::Query;
use fabric_master::store::Kind;
use fabric_master::store::model::Oid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every organization's label, read linearizably from `peer`.
async fn labels(peer: &str) -> BTreeMap<String, String> {
    let listed = query(
        peer,
        &Query::List {
            kind: Kind::Organization,
            prefix: String::new(),
        },
    )
    .await
    .expect("list organizations");
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["oid"].as_str().unwrap().to_string(),
                o["label"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn started(r: &Replica) {
    wait_for(&r.peer(), "leader with a quorum", |s| {
        s.leader == Some(r.id) && s.has_quorum
    })
    .await;
}

/// Writers propose new organizations and relabel them as fast as they can until stopped;
/// each acknowledged write is recorded as (oid, label).
async fn write_until_killed(
    peer: String,
    first: u64,
    writers: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(Oid, String)> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let peer = peer.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = first + w;
            while !*stop.borrow() {
                let (oid, cmd) = org(n);
                match propose(&peer, &cmd).await {
                    Ok(_) => acked.push((oid, String::new())),
                    Err(_) => break, // the replica is gone
                }
                let label = format!("v{n}");
                match propose(&peer, &relabel(oid, &label)).await {
                    Ok(_) => acked.push((oid, label)),
                    Err(_) => break,
                }
                n += writers;
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_committing_loses_no_acknowledged_write() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let seed = env_u64("DISK_SEED", 7);
    let iterations = env_u64("DISK_ITERATIONS", 12);
    let mut rng = StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let mut r = Replica::new(1, root.path(), vec!["--bootstrap".into()]);
    r.start();
    started(&r).await;
    // What every acknowledged write left: the latest acknowledged label of each organization.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut next = 0;
    for i in 0..iterations {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let writers = tokio::spawn(write_until_killed(r.peer(), next, 8, stop_rx));
        // The kill lands at a random point of a stream of commits.
        let after = Duration::from_millis(rng.gen_range(30..400));
        tokio::time::sleep(after).await;
        r.kill();
        let _ = stop_tx.send(true);
        let acked = writers.await.unwrap();
        let n = acked.len();
        for (oid, label) in acked {
            // A later write of the same writer acknowledged after an earlier one: keep the last.
            expected.insert(oid.to_string(), label);
        }
        next += 100_000;
        r.start();
        started(&r).await;
        let found = labels(&r.peer()).await;
        for (oid, label) in &expected {
            let got = found.get(oid);
            assert!(
                got.is_some(),
                "seed {seed} iteration {i}: acknowledged organization {oid} is gone\n{}",
                r.log_tail(20)
            );
            // A write in flight at the kill may have been applied too: the label is the
            // acknowledged one or the next one this writer was writing, never an older one.
            let got = got.unwrap();
            assert!(
                got == label || label.is_empty() || label_after(got, label),
                "seed {seed} iteration {i}: {oid} reads {got:?}, acknowledged {label:?}"
            );
        }
        eprintln!(
            "iteration {i}: killed after {after:?}, {n} writes acknowledged, {} organizations intact",
            expected.len()
        );
    }
}

/// Labels are `v<n>` with n growing per writer: `got` is a write after `acked`.
fn label_after(got: &str, acked: &str) -> bool {
    let n = |s: &str| s.strip_prefix('v').and_then(|n| n.parse::<u64>().ok());
    matches!((n(got), n(acked)), (Some(g), Some(a)) if g > a)
}

/// Starts `r` and waits for it to exit by itself; returns its log.
async fn start_expecting_refusal(r: &mut Replica) -> String {
    // The error, not a backtrace, is what an operator reads.
    r.env.push(("RUST_BACKTRACE".into(), "0".into()));
    r.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let child = r.child.as_mut().unwrap();
        if let Some(code) = child.try_wait().unwrap() {
            r.child = None;
            assert!(!code.success(), "a replica on a damaged file exited 0");
            return r.log_tail(40);
        }
        if status(&r.peer()).await.is_some() {
            panic!(
                "a replica started on a damaged file and serves\n{}",
                r.log_tail(40)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no exit within 30 s\n{}",
            r.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replica with some state, stopped: its file and the labels it held.
async fn replica_with_state(root: &std::path::Path) -> (Replica, BTreeMap<String, String>) {
    let mut r = Replica::new(1, root, vec!["--bootstrap".into()]);
    r.start();
    started(&r).await;
    let oids = write_many(&r.peer(), 0, 300, 8).await;
    for (i, oid) in oids.iter().enumerate().take(100) {
        propose(&r.peer(), &relabel(*oid, &format!("label-{i}")))
            .await
            .unwrap();
    }
    let held = labels(&r.peer()).await;
    assert_eq!(held.len(), 300);
    signal(&r, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.child.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.child = None;
    (r, held)
}

fn state_file(r: &Replica) -> std::path::PathBuf {
    r.data_dir.join(fabric_master::server::STATE_FILE)
}

fn assert_clear_refusal(log: &str, what: &str) {
    assert!(
        log.contains("is damaged") && log.contains("empty data dir"),
        "{what}: the refusal does not say what is wrong and what to do:\n{log}"
    );
    assert!(
        !log.contains("panicked"),
        "{what}: the replica panicked:\n{log}"
    );
    let line = log.lines().find(|l| l.contains("is damaged")).unwrap();
    eprintln!("{what}: refused: {}", line.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_truncated_state_file_is_refused_with_a_clear_error() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let (mut r, _) = replica_with_state(root.path()).await;
    let path = state_file(&r);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let log = start_expecting_refusal(&mut r).await;
    assert_clear_refusal(&log, "truncated to half");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flipped_bits_are_refused_or_harmless_never_served() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let (r, held) = replica_with_state(root.path()).await;
    let pristine = std::fs::read(state_file(&r)).unwrap();
    let seed = env_u64("DISK_SEED", 7);
    let mut rng = StdRng::seed_from_u64(seed);
    let rounds = env_u64("DISK_FLIP_ROUNDS", 6);
    let (mut refused, mut harmless) = (0, 0);
    for round in 0..rounds {
        // Each round starts from the intact file and damages a few bytes of it.
        let dir = root.path().join(format!("flip{round}"));
        let mut copy = Replica::new(1, &dir, vec![]);
        std::fs::create_dir_all(&copy.data_dir).unwrap();
        let path = state_file(&copy);
        std::fs::write(&path, &pristine).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut flipped = Vec::new();
        for _ in 0..4 {
            let at = rng.gen_range(0..pristine.len() as u64);
            let mut byte = [0u8];
            f.seek(SeekFrom::Start(at)).unwrap();
            f.read_exact(&mut byte).unwrap();
            byte[0] ^= 1 << rng.gen_range(0..8);
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&byte).unwrap();
            flipped.push(at);
        }
        f.sync_all().unwrap();
        drop(f);
        copy.env.push(("RUST_BACKTRACE".into(), "0".into()));
        copy.start();
        // Either it refuses (exits with the clear error), or everything it serves is what the
        // intact file held.
        let deadline = Instant::now() + Duration::from_secs(30);
        let outcome = loop {
            if let Some(code) = copy.child.as_mut().unwrap().try_wait().unwrap() {
                copy.child = None;
                assert!(!code.success());
                break Err(copy.log_tail(40));
            }
            if let Some(s) = status(&copy.peer()).await
                && s.has_quorum
            {
                break Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: neither refused nor serving\n{}",
                copy.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match outcome {
            Err(log) => {
                assert_clear_refusal(&log, &format!("round {round}, bytes {flipped:?}"));
                refused += 1;
            }
            Ok(()) => {
                let served = labels(&copy.peer()).await;
                assert_eq!(
                    served, held,
                    "round {round}: bytes {flipped:?} flipped, and the replica serves other data"
                );
                copy.kill();
                harmless += 1;
            }
        }
    }
    eprintln!("seed {seed}: {refused} damaged files refused, {harmless} served intact data");
}

/// Replica 3's disk fills up while the cluster takes writes: the other two go on (no
/// acknowledged write is lost, none waits for the full replica), the full one says why in
/// its log and serves nothing stale; given space and restarted, it catches up with every
/// acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_stops_one_replica_not_the_cluster() {
    if std::env::var("FABRIC_SKIP_MOUNT").as_deref() == Ok("1") {
        eprintln!("FABRIC_SKIP_MOUNT=1: the disk-full test is left out");
        return;
    }
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&root.path().join("small"), 8);
    let mut replicas = three(root.path()).await;
    disk.take_in(&mut replicas[2]);
    wait_for(&replicas[0].peer(), "replica 3 back", |s| {
        s.voters == vec![1, 2, 3] && s.has_quorum
    })
    .await;
    // Large writes through the two others until replica 3's 8 MiB are gone (and then some).
    let p1 = replicas[0].peer();
    let mut acked: Vec<(Oid, String)> = Vec::new();
    let big = "x".repeat(60_000);
    let full_at = Instant::now() + Duration::from_secs(120);
    let mut n = 0u64;
    loop {
        n += 1;
        let (oid, cmd) = org(10_000 + n);
        propose(&p1, &cmd)
            .await
            .expect("a write with replicas 1 and 2 up");
        let label = format!("{n}-{big}");
        propose(&p1, &relabel(oid, &label))
            .await
            .expect("a write with replicas 1 and 2 up");
        acked.push((oid, label));
        let log = replicas[2].log_tail(200);
        if log.contains("No space left on device") || log.contains("os error 28") {
            break;
        }
        assert!(
            Instant::now() < full_at,
            "replica 3's disk did not fill within 120 s\n{}",
            replicas[2].log_tail(20)
        );
    }
    let log = replicas[2].log_tail(200);
    let said = log
        .lines()
        .find(|l| l.contains("No space left on device") || l.contains("os error 28"))
        .unwrap_or_default();
    eprintln!("replica 3, out of space, said: {}", said.trim());
    // The cluster goes on without it.
    for i in 0..20 {
        let (oid, cmd) = org(900_000 + i);
        propose(&p1, &cmd).await.expect("writes go on");
        acked.push((oid, String::new()));
    }
    // It stops and says why (its supervisor restarts it), rather than linger half alive.
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = replicas[2].child.as_mut().unwrap().try_wait().unwrap() {
            replicas[2].child = None;
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "replica 3 still runs 30 s after its disk filled\n{}",
            replicas[2].log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!code.success(), "replica 3 exited 0 with a full disk");
    // (A backtrace may follow the line, with RUST_BACKTRACE set.)
    assert!(
        replicas[2].log_tail(400).contains("the Raft core stopped"),
        "replica 3 did not say why it stopped:\n{}",
        replicas[2].log_tail(40)
    );
    eprintln!("replica 3 after its disk filled: exited ({code})");
    // Space again, a restart: it catches up with everything.
    let p3 = replicas[2].peer();
    disk.resize_kib(256 * 1024);
    replicas[2].start();
    wait_for(&p3, "replica 3 caught up", |s| {
        s.has_quorum && s.last_applied >= s.last_log_index.map(|i| i.saturating_sub(1))
    })
    .await;
    let found = labels(&p3).await;
    for (oid, label) in &acked {
        let got = found.get(&oid.to_string());
        assert!(
            got.is_some_and(|g| label.is_empty() || g == label),
            "replica 3 lacks acknowledged write {oid} after the disk was freed"
        );
    }
    eprintln!(
        "{} writes acknowledged while replica 3's disk filled and after; all on replica 3 once it had space",
        acked.len()
    );
}

/// Snapshots are built every 25 entries while writes go on, and a learner that joins on an
/// empty data dir (the leader keeps only 100 entries, so it needs a snapshot) is killed -9 at
/// random points of its catch-up and restarted on what it had, six times, while a follower
/// voter is killed in the middle of its own snapshot builds. Everything converges, and every
/// acknowledged write is on the learner and on the follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_snapshots_are_built_and_installed() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let seed = env_u64("DISK_SEED", 7);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let root = tempfile::tempdir().unwrap();
    let flags = ["--raft-snapshot-logs".to_string(), "25".into()];
    let mut replicas = three_with(root.path(), &flags).await;
    let p1 = replicas[0].peer();
    let mut acked = write_many(&p1, 0, 600, 16).await;
    let mut args = vec!["--join".to_string(), p1.clone(), "--learner".into()];
    args.extend(flags.iter().cloned());
    let mut learner = Replica::new(4, root.path(), args);
    let mut kills = Vec::new();
    for round in 0..6u64 {
        learner.start();
        let writer = tokio::spawn({
            let p1 = p1.clone();
            async move { write_many(&p1, 10_000 * (round + 1), 150, 8).await }
        });
        let after = Duration::from_millis(rng.gen_range(50..1200));
        tokio::time::sleep(after).await;
        learner.kill();
        // A follower voter (never the leader the writes go through) dies mid-snapshot too.
        let leader = status(&p1).await.and_then(|s| s.leader);
        if let Some(f) = replicas
            .iter_mut()
            .find(|r| Some(r.id) != leader && r.id != 1)
        {
            f.kill();
            f.start();
        }
        acked.extend(writer.await.unwrap());
        kills.push(after);
    }
    learner.start();
    let target = status(&p1).await.unwrap().last_log_index.unwrap();
    wait_for(&learner.peer(), "the learner caught up", |s| {
        s.last_applied.is_some_and(|a| a >= target) && s.learners.contains(&4)
    })
    .await;
    assert_all_present(&learner.peer(), &acked).await;
    for r in &replicas {
        wait_for(&r.peer(), "a quorum", |s| s.has_quorum).await;
        assert_all_present(&r.peer(), &acked).await;
    }
    let snapshots = status(&learner.peer()).await.unwrap().snapshot;
    eprintln!(
        "learner killed after {kills:?} of catch-up; {} acknowledged writes on all 4 replicas (learner snapshot at {snapshots:?})",
        acked.len()
    );
}
