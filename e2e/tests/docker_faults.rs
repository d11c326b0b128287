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

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fabric_master::replica::{ProposeError, Query, QueryError, Status};
use fabric_master::rpc::{PeerClient, client, pb};
use fabric_master::store::model::{Oid, Organization};
use fabric_master::store::{AnyRecord, Command, Kind};
use fabric_master::tls::{PeerTls, TlsFiles};
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const IMAGE: &str = "fabric-master";
const TAG: &str = "latest";
const WRITE_TIMEOUT_MS: u64 = 3000;

/// Runs a docker CLI command; panics with its output when it fails.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One replica container.
struct Replica {
    id: u64,
    name: String,
    container: ContainerAsync<GenericImage>,
    /// Where the test reaches its peer port: its address on Docker's default bridge.
    peer: String,
}

impl Replica {
    async fn start(
        id: u64,
        network: &str,
        suffix: &str,
        tls_dir: &Path,
        formation: (&str, String),
    ) -> Replica {
        let name = format!("fm{id}-{suffix}");
        let container = GenericImage::new(IMAGE, TAG)
            .with_wait_for(WaitFor::message_on_stderr("ready on"))
            .with_network(network)
            .with_container_name(&name)
            .with_mount(Mount::bind_mount(tls_dir.to_string_lossy(), "/tls"))
            .with_env_var("FABRIC_PEER_LISTEN", "0.0.0.0:9401")
            .with_env_var("FABRIC_NODE_ID", id.to_string())
            .with_env_var("FABRIC_ADVERTISE", format!("{name}:9401"))
            .with_env_var("FABRIC_PEER_TLS_CA", "/tls/ca.pem")
            .with_env_var("FABRIC_PEER_TLS_CERT", "/tls/replica.pem")
            .with_env_var("FABRIC_PEER_TLS_KEY", "/tls/replica.key")
            .with_env_var("FABRIC_WRITE_TIMEOUT_MS", WRITE_TIMEOUT_MS.to_string())
            .with_env_var("FABRIC_DRAIN_DELAY_MS", "200")
            .with_env_var("FABRIC_DRAIN_WINDOW_MS", "200")
            .with_env_var(formation.0, formation.1)
            .with_startup_timeout(Duration::from_secs(60))
            .start()
            .await
            .expect("replica container starts");
        docker(&["network", "connect", "bridge", container.id()]);
        let ip = docker(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.bridge.IPAddress}}",
            container.id(),
        ]);
        Replica {
            id,
            name,
            container,
            peer: format!("{ip}:9401"),
        }
    }
}

/// The peer-port client of the test (the operator's certificate).
struct Peers {
    tls: Arc<PeerTls>,
}

impl Peers {
    fn client(&self, peer: &str) -> PeerClient {
        client(peer, Some(&self.tls)).expect("a lazy client")
    }

    async fn status(&self, peer: &str) -> Option<Status> {
        let mut request = tonic::Request::new(pb::StatusRequest {});
        request.set_timeout(Duration::from_secs(2));
        let reply = self.client(peer).status(request).await.ok()?;
        serde_json::from_slice(&reply.into_inner().json).ok()
    }

    async fn wait_for(&self, peer: &str, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.status(peer).await
                && ok(&s)
            {
                return s;
            }
            assert!(Instant::now() < deadline, "{peer}: {what} within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn propose(&self, peer: &str, cmd: &Command) -> Result<serde_json::Value, ProposeError> {
        let mut request = tonic::Request::new(pb::Proposal {
            command: serde_json::to_vec(cmd).unwrap(),
            forwarded: false,
        });
        request.set_timeout(Duration::from_millis(WRITE_TIMEOUT_MS * 2));
        let reply = self
            .client(peer)
            .propose(request)
            .await
            .map_err(|e| ProposeError::Fatal(e.to_string()))?;
        serde_json::from_slice(&reply.into_inner().result).unwrap()
    }

    async fn query(&self, peer: &str, q: &Query) -> Result<serde_json::Value, String> {
        let mut request = tonic::Request::new(pb::QueryRequest {
            query: serde_json::to_vec(q).unwrap(),
        });
        request.set_timeout(Duration::from_millis(WRITE_TIMEOUT_MS * 2));
        let reply = self
            .client(peer)
            .query(request)
            .await
            .map_err(|e| e.to_string())?;
        let answer: Result<serde_json::Value, QueryError> =
            serde_json::from_slice(&reply.into_inner().result).unwrap();
        answer.map_err(|e| e.to_string())
    }
}

fn org(n: u64) -> (Oid, Command) {
    let oid = uuid::Uuid::new_v4();
    let record = AnyRecord::Organization(Organization {
        oid,
        label: None,
        description: None,
        tags: None,
        name: format!("org-{n}-{}", oid.simple()),
        otype: Some(2),
        registered: 1_700_000_000_000_000 + n as i64,
    });
    (oid, Command::Insert { record })
}

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

/// The cluster CA, one certificate for every replica (peers check the CA and the name
/// `fabric-master-peer`, not host names) and one for the test; readable by the containers'
/// non-root user.
fn make_tls(dir: &Path) {
    fabric_master::tls::make_ca(dir, 1).unwrap();
    for name in ["replica", "operator"] {
        fabric_master::tls::issue(dir, dir, name, &[], 1).unwrap();
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
    }
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_a_docker_cluster_lose_no_acknowledged_write() {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let network = format!("fabric-faults-{suffix}");
    let tls_dir = tempfile::tempdir().unwrap();
    make_tls(tls_dir.path());
    let peers = Arc::new(Peers {
        tls: PeerTls::load(TlsFiles {
            ca: tls_dir.path().join("ca.pem"),
            cert: tls_dir.path().join("operator.pem"),
            key: tls_dir.path().join("operator.key"),
        })
        .unwrap(),
    });

    // Three voters: 1 forms the cluster, 2 and 3 join it.
    let r1 = Replica::start(
        1,
        &network,
        &suffix,
        tls_dir.path(),
        ("FABRIC_BOOTSTRAP", "true".into()),
    )
    .await;
    let seed = format!("{}:9401", r1.name);
    let r2 = Replica::start(
        2,
        &network,
        &suffix,
        tls_dir.path(),
        ("FABRIC_JOIN", seed.clone()),
    )
    .await;
    let r3 = Replica::start(
        3,
        &network,
        &suffix,
        tls_dir.path(),
        ("FABRIC_JOIN", seed.clone()),
    )
    .await;
    let all = [&r1, &r2, &r3];
    peers
        .wait_for(&r1.peer, "three voters", |s| s.voters == vec![1, 2, 3])
        .await;

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
