//! Real replicas as processes on loopback: writes through any replica, leader loss,
//! restarts, catching up through a snapshot, backup and restore.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use fabric_master::api::errors::refusal_uri;
use fabric_master::replica::{ProposeError, Query, QueryError, Status};
use fabric_master::rpc::{client, pb};
use fabric_master::store::model::{Oid, Organization};
use fabric_master::store::{AnyRecord, Command, Kind};

/// The clusters of these tests run one at a time: a dozen debug-build replicas sharing two
/// cores would miss heartbeats and turn every test into an election test.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Replica {
    id: u64,
    ws_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    formation: Vec<String>,
    child: Option<Child>,
}

impl Replica {
    fn new(id: u64, root: &std::path::Path, formation: Vec<String>) -> Replica {
        Replica {
            id,
            ws_port: free_port(),
            peer_port: free_port(),
            data_dir: root.join(format!("replica{id}")),
            formation,
            child: None,
        }
    }

    fn peer(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .unwrap();
        let child = Process::new(env!("CARGO_BIN_EXE_fabric-master"))
            .arg("start")
            .args(["--listen", &format!("127.0.0.1:{}", self.ws_port)])
            .args(["--peer-listen", &self.peer()])
            .args(["--node-id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.formation)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no chance to flush or say goodbye.
    fn kill(&mut self) {
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

async fn status(peer: &str) -> Option<Status> {
    let mut c = client(peer, None).ok()?;
    let reply = tokio::time::timeout(Duration::from_secs(2), c.status(pb::StatusRequest {}))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&reply.into_inner().json).ok()
}

async fn wait_for<F: Fn(&Status) -> bool>(peer: &str, what: &str, ok: F) -> Status {
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

async fn propose(peer: &str, cmd: &Command) -> Result<serde_json::Value, ProposeError> {
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

async fn query(peer: &str, q: &Query) -> Result<serde_json::Value, String> {
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

async fn org_count(peer: &str) -> u64 {
    try_org_count(peer).await.unwrap()
}

/// `None` while the replica cannot answer a linearizable read yet.
async fn try_org_count(peer: &str) -> Option<u64> {
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
async fn write_many(peer: &str, start: u64, count: u64, parallel: u64) -> Vec<Oid> {
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

async fn assert_all_present(peer: &str, oids: &[Oid]) {
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
async fn three(root: &std::path::Path) -> Vec<Replica> {
    let mut r1 = Replica::new(1, root, vec!["--bootstrap".into()]);
    r1.start();
    let seed = r1.peer();
    wait_for(&seed, "a leader", |s| s.leader == Some(1)).await;
    let mut r2 = Replica::new(2, root, vec!["--join".into(), seed.clone()]);
    let mut r3 = Replica::new(3, root, vec!["--join".into(), seed.clone()]);
    r2.start();
    r3.start();
    wait_for(&seed, "three voters", |s| s.voters == vec![1, 2, 3]).await;
    vec![r1, r2, r3]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_leader_loss_and_full_restart() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let mut replicas = three(root.path()).await;
    let mut acked = Vec::new();

    // Writes through every replica (followers forward) are read back from every replica.
    for (i, r) in replicas.iter().enumerate() {
        acked.extend(write_many(&r.peer(), i as u64 * 100, 100, 10).await);
    }
    for r in &replicas {
        assert_eq!(org_count(&r.peer()).await, 300);
        assert_all_present(&r.peer(), &acked).await;
    }

    // A refused write is refused the same way wherever it is proposed.
    let (_, dup) = org(0);
    let first = propose(&replicas[1].peer(), &dup).await;
    assert!(first.is_ok());
    let again = propose(&replicas[2].peer(), &dup).await;
    match again {
        Err(ProposeError::Refused(e)) => {
            assert_eq!(refusal_uri(&e), "crossbar.error.already_exists")
        }
        other => panic!("duplicate accepted: {other:?}"),
    }
    acked.push(match &dup {
        Command::Insert {
            record: AnyRecord::Organization(o),
        } => o.oid,
        _ => unreachable!(),
    });

    // kill -9 the leader: another one takes over and writes continue.
    let leader = status(&replicas[0].peer()).await.unwrap().leader.unwrap();
    let li = replicas.iter().position(|r| r.id == leader).unwrap();
    replicas[li].kill();
    let survivor = replicas[(li + 1) % 3].peer();
    wait_for(&survivor, "a new leader", |s| {
        s.leader.is_some() && s.leader != Some(leader)
    })
    .await;
    acked.extend(write_many(&survivor, 1_000, 200, 10).await);

    // The old leader restarts with its data and catches up.
    replicas[li].start();
    let total = acked.len() as u64;
    let old = replicas[li].peer();
    wait_for(&old, "catching up", |s| {
        s.leader.is_some() && s.leader != Some(0)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_org_count(&old).await != Some(total) {
        assert!(Instant::now() < deadline, "old leader did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every replica killed and restarted: nothing acknowledged is lost.
    for r in replicas.iter_mut() {
        r.kill();
    }
    for r in replicas.iter_mut() {
        r.start();
    }
    for r in &replicas {
        wait_for(&r.peer(), "a leader after restart", |s| s.leader.is_some()).await;
        assert_all_present(&r.peer(), &acked).await;
        assert_eq!(org_count(&r.peer()).await, total);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_replica_rejoins_through_a_snapshot() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let mut replicas = three(root.path()).await;
    let leader = status(&replicas[0].peer()).await.unwrap().leader.unwrap();
    let follower = replicas.iter().position(|r| r.id != leader).unwrap();
    let writer = replicas.iter().find(|r| r.id == leader).unwrap().peer();
    replicas[follower].kill();

    let acked = write_many(&writer, 0, 10_000, 32).await;
    assert_eq!(acked.len(), 10_000);
    // The leader has compacted its log past what the stopped replica has.
    let s = wait_for(&writer, "a purged log", |s| s.purged.is_some()).await;
    let purged = s.purged.unwrap();

    replicas[follower].start();
    let peer = replicas[follower].peer();
    let s = wait_for(&peer, "a snapshot installed", |s| s.snapshot.is_some()).await;
    assert!(s.snapshot.unwrap() >= purged, "{s:?} vs purged {purged}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_org_count(&peer).await != Some(10_000) {
        assert!(
            Instant::now() < deadline,
            "rejoined replica did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_all_present(&peer, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_and_quorum_loss() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let mut replicas = three(root.path()).await;
    let p1 = replicas[0].peer();

    // Removing a voter is safe: the remaining two keep committing.
    let bin = env!("CARGO_BIN_EXE_fabric-master");
    let out = Process::new(bin)
        .args(["cluster", "--peer", &p1, "remove", "--node-id", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(&p1, "two voters", |s| s.voters == vec![1, 2]).await;
    replicas[2].kill();
    write_many(&p1, 0, 50, 5).await;

    // Leadership moves on request.
    let target = if status(&p1).await.unwrap().leader == Some(1) {
        2
    } else {
        1
    };
    let out = Process::new(bin)
        .args([
            "cluster",
            "--peer",
            &p1,
            "transfer-leader",
            "--node-id",
            &target.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&p1).await.unwrap().leader, Some(target));

    // With one of two voters gone there is no quorum: writes fail with a clear error and
    // the survivor says so in /readyz.
    let (gone, left) = if target == 1 { (0, 1) } else { (1, 0) };
    replicas[gone].kill();
    let survivor = replicas[left].peer();
    let (_, cmd) = org(99);
    let started = Instant::now();
    match propose(&survivor, &cmd).await {
        Err(ProposeError::NoQuorum(_)) | Err(ProposeError::Timeout(_)) => {}
        other => panic!("write without quorum: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    let ws = replicas[left].ws_port;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = http_status(ws, "/readyz");
        if code == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {code} without quorum"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn http_status(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restores_into_a_new_cluster() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let mut r1 = Replica::new(1, root.path(), vec![]);
    r1.start();
    wait_for(&r1.peer(), "a leader", |s| s.leader == Some(1)).await;
    let acked = write_many(&r1.peer(), 0, 500, 10).await;

    let bin = env!("CARGO_BIN_EXE_fabric-master");
    let file = root.path().join("state.backup");
    let out = Process::new(bin)
        .args(["backup", "--peer", &r1.peer(), "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r1.kill();

    // Restore into a fresh data dir, start it as the first replica, then grow the cluster:
    // the new replica gets the restored state through a snapshot.
    let mut n1 = Replica::new(7, root.path(), vec![]);
    let out = Process::new(bin)
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&n1.data_dir)
        .args(["--node-id", "7", "--advertise", &n1.peer()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    n1.start();
    wait_for(&n1.peer(), "a leader", |s| s.leader == Some(7)).await;
    assert_all_present(&n1.peer(), &acked).await;
    write_many(&n1.peer(), 1_000, 10, 2).await;

    let mut n2 = Replica::new(8, root.path(), vec!["--join".into(), n1.peer()]);
    n2.start();
    wait_for(&n1.peer(), "two voters", |s| s.voters == vec![7, 8]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_org_count(&n2.peer()).await != Some(510) {
        assert!(
            Instant::now() < deadline,
            "joined replica lacks the restored state"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_all_present(&n2.peer(), &acked).await;

    let out = Process::new(bin)
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&n1.data_dir)
        .output()
        .unwrap();
    // Restoring again over a data dir in use is refused.
    assert!(
        !out.status.success(),
        "restore over a live data dir must be refused"
    );
}
