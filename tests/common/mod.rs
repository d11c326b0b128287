//! The harness of the multi-replica tests: real replicas as processes on loopback, and
//! their peer-port client calls. Each test target uses part of it.
#![allow(dead_code)]

pub mod linearizability;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use fabric_master::replica::{ProposeError, Query, QueryError, Status};
use fabric_master::rpc::{client, pb};
use fabric_master::store::model::{Oid, Organization};
use fabric_master::store::{AnyRecord, Command, Kind};

/// The clusters of these tests run one at a time: a dozen debug-build replicas sharing two
/// cores would miss heartbeats and turn every test into an election test.
pub static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Replica {
    pub id: u64,
    pub ws_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    /// Where its stderr goes: beside the data dir, and not moved with it.
    pub log: PathBuf,
    pub formation: Vec<String>,
    /// Extra environment (e.g. HOSTNAME of a StatefulSet pod).
    pub env: Vec<(String, String)>,
    pub child: Option<Child>,
}

impl Replica {
    pub fn new(id: u64, root: &std::path::Path, formation: Vec<String>) -> Replica {
        Replica {
            id,
            ws_port: free_port(),
            peer_port: free_port(),
            data_dir: root.join(format!("replica{id}")),
            log: root.join(format!("replica{id}.log")),
            formation,
            env: Vec::new(),
            child: None,
        }
    }

    pub fn peer(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Process::new(env!("CARGO_BIN_EXE_fabric-master"))
            .arg("start")
            // Stop at once: these tests do not exercise the drain (tests/python/test_cluster.py does).
            .env("FABRIC_DRAIN_DELAY_MS", "0")
            .env("FABRIC_DRAIN_WINDOW_MS", "0")
            .args(["--listen", &format!("127.0.0.1:{}", self.ws_port)])
            .args(["--peer-listen", &self.peer()])
            .args(["--node-id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.formation)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The end of this replica's log, for failure reports.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn status(peer: &str) -> Option<Status> {
    let mut c = client(peer, None).ok()?;
    let reply = tokio::time::timeout(Duration::from_secs(2), c.status(pb::StatusRequest {}))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&reply.into_inner().json).ok()
}

pub async fn wait_for<F: Fn(&Status) -> bool>(peer: &str, what: &str, ok: F) -> Status {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = status(peer).await
            && ok(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{peer}: timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn org(n: u64) -> (Oid, Command) {
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

pub async fn propose(peer: &str, cmd: &Command) -> Result<serde_json::Value, ProposeError> {
    let mut c = client(peer, None).map_err(|e| ProposeError::Fatal(e.to_string()))?;
    let reply = c
        .propose(pb::Proposal {
            command: serde_json::to_vec(cmd).unwrap(),
            forwarded: false,
        })
        .await
        .map_err(|e| ProposeError::Fatal(e.to_string()))?;
    serde_json::from_slice(&reply.into_inner().result).unwrap()
}

pub async fn query(peer: &str, q: &Query) -> Result<serde_json::Value, String> {
    let mut c = client(peer, None).map_err(|e| e.to_string())?;
    let reply = c
        .query(pb::QueryRequest {
            query: serde_json::to_vec(q).unwrap(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let answer: Result<serde_json::Value, QueryError> =
        serde_json::from_slice(&reply.into_inner().result).unwrap();
    answer.map_err(|e| e.to_string())
}

pub async fn org_count(peer: &str) -> u64 {
    try_org_count(peer).await.unwrap()
}

/// `None` while the replica cannot answer a linearizable read yet.
pub async fn try_org_count(peer: &str) -> Option<u64> {
    query(
        peer,
        &Query::Count {
            kind: Kind::Organization,
        },
    )
    .await
    .ok()?
    .as_u64()
}

/// Writes `count` organizations through `peer` with `parallel` proposers; returns the oids
/// of the acknowledged ones (all of them must be, unless `tolerate_failures`).
pub async fn write_many(peer: &str, start: u64, count: u64, parallel: u64) -> Vec<Oid> {
    let mut tasks = Vec::new();
    for w in 0..parallel {
        let peer = peer.to_string();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = start + w;
            while n < start + count {
                let (oid, cmd) = org(n);
                propose(&peer, &cmd).await.expect("write acknowledged");
                acked.push(oid);
                n += parallel;
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

pub async fn assert_all_present(peer: &str, oids: &[Oid]) {
    let listed = query(
        peer,
        &Query::List {
            kind: Kind::Organization,
            prefix: String::new(),
        },
    )
    .await
    .unwrap();
    let present: BTreeSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["oid"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<_> = oids
        .iter()
        .filter(|o| !present.contains(&o.to_string()))
        .collect();
    assert!(
        missing.is_empty(),
        "{peer} lost {} acknowledged writes",
        missing.len()
    );
}

/// Three replicas: 1 bootstraps, 2 and 3 join through 1.
pub async fn three(root: &std::path::Path) -> Vec<Replica> {
    three_with(root, &[]).await
}

/// As `three`, every replica started with `extra` flags too.
pub async fn three_with(root: &std::path::Path, extra: &[String]) -> Vec<Replica> {
    let with = |mut args: Vec<String>| {
        args.extend(extra.iter().cloned());
        args
    };
    let mut r1 = Replica::new(1, root, with(vec!["--bootstrap".into()]));
    r1.start();
    let seed = r1.peer();
    wait_for(&seed, "a leader", |s| s.leader == Some(1)).await;
    let mut r2 = Replica::new(2, root, with(vec!["--join".into(), seed.clone()]));
    let mut r3 = Replica::new(3, root, with(vec!["--join".into(), seed.clone()]));
    r2.start();
    r3.start();
    // `voters` is already [1, 2, 3] in the joint stage of the last join: a test that kills
    // the leader right away would otherwise catch the change half-done.
    wait_for(&seed, "three voters", |s| {
        s.voter_sets == vec![vec![1, 2, 3]]
    })
    .await;
    vec![r1, r2, r3]
}

/// Sends `sig` (e.g. `-STOP`, `-CONT`) to a running replica.
pub fn signal(r: &Replica, sig: &str) {
    let pid = r.child.as_ref().expect("running").id();
    let ok = Process::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A write of organization `oid`'s label: the register the fault tests read and write.
pub fn relabel(oid: Oid, label: &str) -> Command {
    let mut delta = serde_json::Map::new();
    delta.insert("label".into(), label.into());
    Command::Modify {
        kind: Kind::Organization,
        key: oid.to_string(),
        delta,
        status_rule: None,
    }
}

/// A tmpfs of `mib` MiB mounted at `dir` (root only); unmounted on drop.
pub struct SmallDisk {
    pub dir: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, mib: u64) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs at {} (the disk-full test needs root; FABRIC_SKIP_MOUNT=1 leaves it out): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Moves replica `r`'s data dir onto this disk: stopped, copied, started there (its log
    /// file stays where it was).
    pub fn take_in(&self, r: &mut Replica) {
        r.kill();
        let moved = self.dir.join(format!("replica{}", r.id));
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&r.data_dir)
            .arg(&moved)
            .status()
            .unwrap()
            .success();
        assert!(
            copied,
            "replica {}'s data dir copied to the small disk",
            r.id
        );
        r.data_dir = moved;
        r.start();
    }

    /// Grows or shrinks it (not below what it holds).
    pub fn resize_kib(&self, kib: u64) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
            .arg(&self.dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount of {} to {kib} KiB", self.dir.display());
    }

    /// What its files take, in KiB.
    pub fn used_kib(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["-k", "--output=used"])
            .arg(&self.dir)
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df says what is used")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Asks the replica at `peer` to build a snapshot now (`fabric-master cluster snapshot`).
pub async fn trigger_snapshot(peer: &str) -> bool {
    let Ok(mut c) = client(peer, None) else {
        return false;
    };
    tokio::time::timeout(
        Duration::from_secs(2),
        c.trigger_snapshot(pb::SnapshotRequest {}),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}
