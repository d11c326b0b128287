//! The nemesis: kills (-9) and freezes (SIGSTOP) replicas, moves replica 2's wall clock,
//! changes the membership (a learner that comes and goes, voters replaced), fills replica 3's
//! disk and kills replicas in the middle of snapshots (`storage_faults`), under the load.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::*;
use crate::link_proxy::Inbound;
use crate::storage_faults::{fill_the_disk, kill_in_a_snapshot_build, kill_in_a_snapshot_install};
use crate::{Peers, restart, ws_url};

/// The membership side of the nemesis: a learner that comes and goes, and voters replaced.
pub struct Membership {
    pub root: std::path::PathBuf,
    /// libfaketime's offset file for replica 2's wall clock.
    pub clock_file: std::path::PathBuf,
    pub timing: Vec<String>,
    pub next_id: u64,
    pub learner: Option<Replica>,
    /// The tmpfs replica 3's data dir is on (and its replacement's); none without root
    /// (`FABRIC_SKIP_MOUNT=1`).
    pub small_disk: Option<SmallDisk>,
    /// The proxies in front of replicas 1–3's peer ports (`link_proxy`).
    pub proxies: Vec<Inbound>,
}

impl Membership {
    /// A live replica's peer address, to join through or to ask.
    async fn live_peer(peers: &[String]) -> Option<String> {
        for p in peers {
            if let Some(s) = status(p).await
                && s.leader.is_some()
            {
                return Some(p.clone());
            }
        }
        None
    }

    fn peers_of(replicas: &[Replica]) -> Vec<String> {
        replicas
            .iter()
            .filter(|r| r.child.is_some())
            .map(Replica::peer)
            .collect()
    }

    /// A learner joins (and is waited for) or, when one is there, leaves on SIGTERM.
    async fn learner_comes_or_goes(&mut self, replicas: &[Replica]) -> String {
        if let Some(mut learner) = self.learner.take() {
            signal(&learner, "-TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while learner
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
                .is_none()
            {
                if Instant::now() > deadline {
                    learner.kill();
                    return format!("learner {} did not leave within 15 s (killed)", learner.id);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            learner.child = None;
            return format!("learner {} left", learner.id);
        }
        let Some(seed_peer) = Self::live_peer(&Self::peers_of(replicas)).await else {
            return "no live replica to join through".into();
        };
        self.next_id += 1;
        let mut args = vec!["--join".to_string(), seed_peer.clone(), "--learner".into()];
        args.extend(self.timing.iter().cloned());
        let mut learner = Replica::new(self.next_id, &self.root, args);
        learner.start();
        let id = learner.id;
        let joined = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if status(&seed_peer)
                    .await
                    .is_some_and(|s| s.learners.contains(&id))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .is_ok();
        self.learner = Some(learner);
        format!(
            "learner {id} {}",
            if joined {
                "joined"
            } else {
                "asked to join (not yet in)"
            }
        )
    }

    /// A follower voter is killed, removed from the membership, and replaced by a new replica
    /// on an empty data dir, which joins as a voter (there is room again) through a snapshot
    /// or the log; clients move from the old address to the new one. With `cut` the leader is
    /// killed in the middle of the promotion (`kill_the_leader_mid_promotion`).
    async fn replace_a_voter(
        &mut self,
        replicas: &mut [Replica],
        peers: &Peers,
        urls: &Peers,
        cut: bool,
        rng: &mut StdRng,
        restarts: &parking_lot::Mutex<Vec<Instant>>,
    ) -> String {
        let Some(asked) = Self::live_peer(&Self::peers_of(replicas)).await else {
            return "no live replica to ask".into();
        };
        let Some(s) = status(&asked).await else {
            return "no status".into();
        };
        let Some(victim) = replicas
            .iter()
            .position(|r| Some(r.id) != s.leader && s.voters.contains(&r.id))
        else {
            return "no follower voter to replace".into();
        };
        let old = replicas[victim].id;
        // Asked through another replica than the one about to go.
        let Some(asked) = Self::live_peer(
            &replicas
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != victim)
                .map(|(_, r)| r.peer())
                .collect::<Vec<_>>(),
        )
        .await
        else {
            return "no other live replica to ask".into();
        };
        replicas[victim].kill();
        let removed = std::process::Command::new(env!("CARGO_BIN_EXE_fabric-master"))
            .args([
                "cluster",
                "--peer",
                &asked,
                "remove",
                "--node-id",
                &old.to_string(),
            ])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        if !removed.status.success() {
            // The cluster may be electing; the old voter comes back as it was.
            replicas[victim].start();
            return format!(
                "voter {old} not removed ({}), restarted",
                String::from_utf8_lossy(&removed.stderr).trim()
            );
        }
        self.next_id += 1;
        let mut args = vec!["--join".to_string(), asked.clone()];
        args.extend(self.timing.iter().cloned());
        let mut new = Replica::new(self.next_id, &self.root, args);
        if let Some(disk) = &self.small_disk
            && replicas[victim].data_dir.starts_with(&disk.dir)
        {
            new.data_dir = disk.dir.join(format!("replica{}", new.id));
        }
        new.start();
        let id = new.id;
        {
            let mut p = peers.write();
            let at = p
                .iter()
                .position(|a| *a == replicas[victim].peer())
                .unwrap();
            p[at] = new.peer();
            let mut u = urls.write();
            let at = u
                .iter()
                .position(|a| *a == ws_url(&replicas[victim]))
                .unwrap();
            u[at] = ws_url(&new);
        }
        replicas[victim] = new;
        let replaced = format!("voter {old} removed and replaced by a fresh replica {id}");
        if !cut {
            return replaced;
        }
        let pause = Duration::from_millis(rng.gen_range(300..1500));
        let cut = kill_the_leader_mid_promotion(replicas, victim, &asked, pause, restarts).await;
        format!("{replaced}; {cut}")
    }
}

/// Kills the leader between the two commits of replica `fresh`'s promotion to voter, which
/// leaves the joint config of old and new voters in the log for the next leader to finish
/// (`replica/joint_config.rs`). The window is made wide: the other old voter is frozen once
/// the newcomer is a member, so the joint config (which needs that voter's ack) reaches the
/// newcomer but cannot commit; the leader is then killed, the frozen voter thawed, and the
/// leader restarted after `pause`.
async fn kill_the_leader_mid_promotion(
    replicas: &mut [Replica],
    fresh: usize,
    asked: &str,
    pause: Duration,
    restarts: &parking_lot::Mutex<Vec<Instant>>,
) -> String {
    let new_id = replicas[fresh].id;
    let Some(leader) = status(asked)
        .await
        .and_then(|s| s.leader)
        .and_then(|l| replicas.iter().position(|r| r.id == l && r.child.is_some()))
    else {
        return "no leader to kill mid-promotion".into();
    };
    let Some(other) = (0..replicas.len()).find(|i| *i != leader && *i != fresh) else {
        return "no other voter".into();
    };
    let (leader_id, other_id) = (replicas[leader].id, replicas[other].id);
    let leader_peer = replicas[leader].peer();
    let member = poll(Duration::from_secs(10), || async {
        status(&leader_peer)
            .await
            .is_some_and(|s| s.nodes.contains_key(&new_id))
    })
    .await;
    if !member {
        return format!("replica {new_id} not a member within 10 s: leader left alone");
    }
    signal(&replicas[other], "-STOP");
    let fresh_peer = replicas[fresh].peer();
    let joint = poll(Duration::from_secs(3), || async {
        status(&fresh_peer)
            .await
            .is_some_and(|s| s.voter_sets.len() == 2)
    })
    .await;
    if !joint {
        signal(&replicas[other], "-CONT");
        return format!("no joint config on {new_id} within 3 s of freezing voter {other_id}");
    }
    replicas[leader].kill();
    signal(&replicas[other], "-CONT");
    tokio::time::sleep(pause).await;
    restart(&mut replicas[leader], restarts);
    format!(
        "leader {leader_id} killed for {pause:?} in the joint stage of {new_id}'s promotion \
         (voter {other_id} frozen until then)"
    )
}

/// Whether `ok` came true within `limit`, asked every 20 ms.
async fn poll<F, Fut>(limit: Duration, ok: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// What the nemesis does next.
enum Fault {
    Learner,
    ReplaceVoter,
    Clock,
    DiskFull,
    SnapshotInstall,
    /// Peer links slowed, or the links into one replica stalled (`link_proxy`).
    SlowLinks,
    /// A replica killed (-9, now and then in a snapshot build) or frozen (SIGSTOP).
    Process,
}

impl Fault {
    fn draw(rng: &mut StdRng) -> Fault {
        match rng.gen_range(0..100) {
            0..20 => Fault::Learner,
            20..30 => Fault::ReplaceVoter,
            30..40 => Fault::Clock,
            40..48 => Fault::DiskFull,
            48..56 => Fault::SnapshotInstall,
            56..68 => Fault::SlowLinks,
            _ => Fault::Process,
        }
    }
}

/// Kills or freezes one replica at a time (a quorum always remains), every 1.5–3.5 s, some
/// kills aimed at a snapshot being built or installed; now and then a learner joins or
/// leaves, a follower voter is replaced, replica 2's clock jumps or replica 3's disk fills.
pub async fn nemesis(
    replicas: &mut [Replica],
    membership: &mut Membership,
    peers: &Peers,
    urls: &Peers,
    seed: u64,
    until: Instant,
    restarts: &parking_lot::Mutex<Vec<Instant>>,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Vec::new();
    while Instant::now() + Duration::from_secs(4) < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1500..3500))).await;
        // Every run starts with the storage faults, slow links and a voter replaced with its
        // leader killed mid-promotion, then draws.
        let fault = match log.len() {
            0 => Fault::DiskFull,
            1 => Fault::SnapshotInstall,
            2 => Fault::SlowLinks,
            3 => Fault::ReplaceVoter,
            _ => Fault::draw(&mut rng),
        };
        match fault {
            Fault::Learner => {
                log.push(membership.learner_comes_or_goes(replicas).await);
                continue;
            }
            Fault::ReplaceVoter => {
                let cut = log.len() == 3 || rng.gen_bool(0.5);
                log.push(
                    membership
                        .replace_a_voter(replicas, peers, urls, cut, &mut rng, restarts)
                        .await,
                );
                continue;
            }
            Fault::Clock => {
                // Replica 2's wall clock jumps (libfaketime): hours ahead or behind, only the
                // wall clock, as NTP or an operator would move it; leases run on the monotonic
                // one.
                let seconds: i64 = rng.gen_range(60..7200) * if rng.gen_bool(0.5) { 1 } else { -1 };
                std::fs::write(&membership.clock_file, format!("{seconds:+}")).unwrap();
                log.push(format!(
                    "the wall clock of replica 2 jumped to {seconds:+} s"
                ));
                continue;
            }
            Fault::DiskFull => {
                let pause = Duration::from_millis(rng.gen_range(500..2500));
                log.push(match &membership.small_disk {
                    Some(disk) => fill_the_disk(replicas, disk, pause, restarts).await,
                    None => "no small disk (FABRIC_SKIP_MOUNT=1)".into(),
                });
                continue;
            }
            Fault::SnapshotInstall => {
                let pause = Duration::from_millis(rng.gen_range(300..1500));
                log.push(kill_in_a_snapshot_install(replicas, &mut rng, pause, restarts).await);
                continue;
            }
            Fault::SlowLinks => {
                log.push(slow_or_stall_links(replicas, &membership.proxies, &mut rng).await);
                continue;
            }
            Fault::Process => {}
        }
        let leader = status(&replicas[0].peer())
            .await
            .and_then(|s| s.leader)
            .and_then(|l| replicas.iter().position(|r| r.id == l));
        // Half the faults hit the leader.
        let victim = match leader {
            Some(l) if rng.gen_bool(0.5) => l,
            _ => rng.gen_range(0..replicas.len()),
        };
        let pause = Duration::from_millis(rng.gen_range(500..2500));
        let kind: f64 = rng.r#gen();
        if kind < 0.15 {
            log.push(kill_in_a_snapshot_build(replicas, victim, &mut rng, pause, restarts).await);
        } else if kind < 0.55 {
            log.push(format!(
                "kill -9 replica {} for {pause:?}",
                replicas[victim].id
            ));
            replicas[victim].kill();
            tokio::time::sleep(pause).await;
            restart(&mut replicas[victim], restarts);
        } else {
            log.push(format!(
                "SIGSTOP replica {} for {pause:?}",
                replicas[victim].id
            ));
            signal(&replicas[victim], "-STOP");
            tokio::time::sleep(pause).await;
            signal(&replicas[victim], "-CONT");
        }
    }
    log
}

/// Every peer link slowed by 20–250 ms each way, or one replica's (the leader's half the time)
/// slowed by 100–600 ms, or stalled, for 1–3 s. The proxies are those of replicas 1–3; a
/// replica that replaced one of them has none.
async fn slow_or_stall_links(
    replicas: &[Replica],
    proxies: &[Inbound],
    rng: &mut StdRng,
) -> String {
    let hold = Duration::from_millis(rng.gen_range(1000..3000));
    let leader = status(&replicas[0].peer()).await.and_then(|s| s.leader);
    let victim = match leader {
        Some(l) if rng.gen_bool(0.5) => l,
        _ => rng.gen_range(1..=proxies.len() as u64),
    };
    let what = match rng.gen_range(0..3) {
        0 => {
            let delay = Duration::from_millis(rng.gen_range(20..250));
            for p in proxies {
                p.slow(delay);
            }
            format!("every peer link {delay:?} slower each way")
        }
        kind => {
            let Some(p) = proxies.get(victim as usize - 1) else {
                return format!("replica {victim} has no proxy (it replaced one)");
            };
            let lead = if leader == Some(victim) {
                " (the leader)"
            } else {
                ""
            };
            if kind == 1 {
                let delay = Duration::from_millis(rng.gen_range(100..600));
                p.slow(delay);
                format!("the links into replica {victim}{lead} {delay:?} slower each way")
            } else {
                p.stall();
                format!("the links into replica {victim}{lead} stalled")
            }
        }
    };
    tokio::time::sleep(hold).await;
    for p in proxies {
        p.heal();
    }
    format!("{what} for {hold:?}")
}
