//! The storage side of the nemesis: a replica's disk filling up, and kills aimed at snapshots
//! (one being built, one being installed by a follower that fell behind the leader's log).

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use crate::common::*;
use crate::restart;

/// The size of the small disk (a tmpfs) that replica 3's data dir lives on.
pub const SMALL_DISK_MIB: u64 = 512;

/// What is left free when the nemesis fills the small disk: a few log entries.
const LEFT_FREE_KIB: u64 = 64;

/// The replica on the small disk finds it full: its next write of the log or the state fails,
/// its Raft core stops and it exits (`the Raft core stopped`). After `pause` the disk has room
/// again and the replica is started on what it wrote.
pub async fn fill_the_disk(
    replicas: &mut [Replica],
    disk: &SmallDisk,
    pause: Duration,
    restarts: &parking_lot::Mutex<Vec<Instant>>,
) -> String {
    let Some(i) = replicas
        .iter()
        .position(|r| r.child.is_some() && r.data_dir.starts_with(&disk.dir))
    else {
        return "no running replica on the small disk".into();
    };
    let id = replicas[i].id;
    // What the replica logs from here on (its log holds its earlier runs too).
    let log_from = std::fs::metadata(&replicas[i].log).map_or(0, |m| m.len() as usize);
    disk.resize_kib(disk.used_kib() + LEFT_FREE_KIB);
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = loop {
        if let Some(code) = replicas[i].child.as_mut().unwrap().try_wait().unwrap() {
            replicas[i].child = None;
            break Some(code);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let Some(code) = exited else {
        disk.resize_kib(SMALL_DISK_MIB * 1024);
        return format!(
            "the disk of replica {id} full for 10 s: what it wrote fit in its file's free pages (still runs)"
        );
    };
    let since = std::fs::read(&replicas[i].log).unwrap_or_default();
    let since = String::from_utf8_lossy(since.get(log_from..).unwrap_or_default());
    let said_why = since.contains("the Raft core stopped");
    let why: Vec<String> = since
        .lines()
        .filter(|l| l.contains("panick") || l.contains("ERROR") || l.contains("stopped"))
        .map(str::to_owned)
        .collect();
    tokio::time::sleep(pause).await;
    disk.resize_kib(SMALL_DISK_MIB * 1024);
    restart(&mut replicas[i], restarts);
    // Exit code 1 (`main` returns the error); 101 would be a panic on the way out.
    assert!(
        code.code() == Some(1) && said_why,
        "replica {id} out of disk space exited ({code}), not with code 1 after saying the Raft core stopped:\n{}",
        why.join("\n")
    );
    format!(
        "the disk of replica {id} full: it stopped ({code}), restarted {pause:?} later with room"
    )
}

/// A replica asked to build a snapshot is killed (-9) 0–40 ms later, most likely in the middle
/// of the build; restarted after `pause`.
pub async fn kill_in_a_snapshot_build(
    replicas: &mut [Replica],
    victim: usize,
    rng: &mut StdRng,
    pause: Duration,
    restarts: &parking_lot::Mutex<Vec<Instant>>,
) -> String {
    let id = replicas[victim].id;
    if replicas[victim].child.is_none() {
        return format!("replica {id} is down: no snapshot to interrupt");
    }
    let asked = trigger_snapshot(&replicas[victim].peer()).await;
    let after = Duration::from_millis(rng.gen_range(0..40));
    tokio::time::sleep(after).await;
    replicas[victim].kill();
    tokio::time::sleep(pause).await;
    restart(&mut replicas[victim], restarts);
    format!(
        "kill -9 replica {id} {after:?} after it was asked for a snapshot{}",
        if asked { "" } else { " (the ask failed)" }
    )
}

/// A follower voter is killed; the leader snapshots and purges its log past what the follower
/// had, so the follower, restarted, must install a snapshot; it is killed again 20–600 ms into
/// that catch-up and restarted once more.
pub async fn kill_in_a_snapshot_install(
    replicas: &mut [Replica],
    rng: &mut StdRng,
    pause: Duration,
    restarts: &parking_lot::Mutex<Vec<Instant>>,
) -> String {
    let mut view = None;
    for r in replicas.iter().filter(|r| r.child.is_some()) {
        if let Some(s) = status(&r.peer()).await
            && s.leader.is_some()
        {
            view = Some(s);
            break;
        }
    }
    let Some(view) = view else {
        return "no leader to snapshot".into();
    };
    let followers: Vec<usize> = (0..replicas.len())
        .filter(|&i| {
            let r = &replicas[i];
            r.child.is_some() && Some(r.id) != view.leader && view.voters.contains(&r.id)
        })
        .collect();
    if followers.is_empty() {
        return "no running follower voter".into();
    }
    let f = followers[rng.gen_range(0..followers.len())];
    let Some(leader) = replicas.iter().position(|r| Some(r.id) == view.leader) else {
        return "the leader is not one of the runner's replicas".into();
    };
    let id = replicas[f].id;
    let had = status(&replicas[f].peer())
        .await
        .and_then(|s| s.last_log_index)
        .unwrap_or(0);
    replicas[f].kill();
    // The leader keeps 100 entries after a snapshot: the log moves past them (the nemesis
    // writes a key of its own, outside the checked registers, if the clients are slow), the
    // leader snapshots and purges.
    let lp = replicas[leader].peer();
    let deadline = Instant::now() + Duration::from_secs(12);
    let (ballast, create) = org(u64::MAX);
    let created = propose(&lp, &create).await.is_ok();
    let mut purged_past = false;
    let mut n = 0;
    while created && !purged_past && Instant::now() < deadline {
        match status(&lp).await {
            Some(s) if s.purged.is_some_and(|p| p > had) => purged_past = true,
            Some(s) if s.last_log_index.is_some_and(|l| l > had + 120) => {
                trigger_snapshot(&lp).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Some(_) => {
                for _ in 0..20 {
                    n += 1;
                    let _ = propose(&lp, &relabel(ballast, &format!("ballast-{n}"))).await;
                }
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let leader_then = status(&lp)
        .await
        .map(|s| {
            format!(
                "log {:?}, snapshot {:?}, purged {:?}",
                s.last_log_index, s.snapshot, s.purged
            )
        })
        .unwrap_or_default();
    restart(&mut replicas[f], restarts);
    let into = Duration::from_millis(rng.gen_range(20..600));
    tokio::time::sleep(into).await;
    replicas[f].kill();
    tokio::time::sleep(pause).await;
    restart(&mut replicas[f], restarts);
    if purged_past {
        format!(
            "kill -9 follower {id}; the leader's log purged past its {had}; restarted, killed {into:?} into its snapshot install, restarted"
        )
    } else {
        format!(
            "kill -9 follower {id}; the leader's log not purged past its {had} within 12 s ({leader_then}); restarted, killed {into:?} into its catch-up, restarted"
        )
    }
}
