//! The Docker variant of `cluster/`: `cluster/compose-up.sh` runs `cluster/compose.yaml`
//! (three replica containers with mutual TLS) behind haproxy. Through the published ports
//! only: the replicas form one cluster, a write is read back on another replica, the load
//! balancer answers `/readyz`, and it still does after one container is stopped (SIGTERM,
//! drain); `compose-down.sh` leaves no container behind.
//!
//! Needs the image (`bash docker/build.sh`), docker-compose and haproxy.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use fabric_master::replica::{ProposeError, Query, QueryError, Status};
use fabric_master::rpc::{PeerClient, client, pb};
use fabric_master::store::model::Organization;
use fabric_master::store::{AnyRecord, Command, Kind};
use fabric_master::tls::{PeerTls, TlsFiles};

fn script(name: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../cluster")
        .join(name);
    let out = std::process::Command::new("bash")
        .arg(path)
        .args(args)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "cluster/{name} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_env(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("cluster.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// The HTTP status of GET `path` on 127.0.0.1:`port` (0 when nothing answers).
fn http_status(port: u16, path: &str) -> u16 {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn status(c: &mut PeerClient) -> Option<Status> {
    let reply = c.status(pb::StatusRequest {}).await.ok()?;
    serde_json::from_slice(&reply.into_inner().json).ok()
}

async fn wait_for(c: &mut PeerClient, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = status(c).await
            && ok(&s)
        {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn compose_cluster_behind_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let project = format!(
        "fabric-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    script("compose-up.sh", &["--dir", dir_arg, "--project", &project]);
    let env = read_env(dir.path());
    // On a task of its own, so that the cluster is taken down whatever the checks say.
    let result = tokio::spawn(check(env)).await;
    script("compose-down.sh", &["--dir", dir_arg]);
    let left = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "containers left behind");
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn check(env: HashMap<String, String>) {
    let tls = PeerTls::load(TlsFiles {
        ca: env["FABRIC_PEER_TLS_CA"].clone().into(),
        cert: env["FABRIC_PEER_TLS_CERT"].clone().into(),
        key: env["FABRIC_PEER_TLS_KEY"].clone().into(),
    })
    .unwrap();
    let mut r1 = client(&env["REPLICA_1_PEER"], Some(&tls)).unwrap();
    let mut r2 = client(&env["REPLICA_2_PEER"], Some(&tls)).unwrap();
    wait_for(&mut r1, "three voters with a leader", |s| {
        s.voter_sets == vec![vec![1, 2, 3]] && s.leader.is_some()
    })
    .await;
    let lb_port: u16 = env["LB_PORT"].parse().unwrap();
    assert_eq!(http_status(lb_port, "/readyz"), 200);

    // A write through replica 1 is read back through replica 2.
    let oid = uuid::Uuid::new_v4();
    let cmd = Command::Insert {
        record: AnyRecord::Organization(Organization {
            oid,
            label: None,
            description: None,
            tags: None,
            name: format!("compose-{}", oid.simple()),
            otype: None,
            registered: 1,
        }),
    };
    let reply = r1
        .propose(pb::Proposal {
            command: serde_json::to_vec(&cmd).unwrap(),
            forwarded: false,
        })
        .await
        .unwrap();
    let written: Result<serde_json::Value, ProposeError> =
        serde_json::from_slice(&reply.into_inner().result).unwrap();
    written.expect("the write is acknowledged");
    let q = Query::Get {
        kind: Kind::Organization,
        key: oid.to_string(),
    };
    let reply = r2
        .query(pb::QueryRequest {
            query: serde_json::to_vec(&q).unwrap(),
        })
        .await
        .unwrap();
    let read: Result<serde_json::Value, QueryError> =
        serde_json::from_slice(&reply.into_inner().result).unwrap();
    assert!(!read.unwrap().is_null(), "replica 2 reads the write back");

    // One container stops (SIGTERM: it drains); the load balancer keeps answering.
    let stopped = std::process::Command::new("docker")
        .args(["stop", "-t", "30", &env["REPLICA_3_CONTAINER"]])
        .output()
        .unwrap();
    assert!(stopped.status.success());
    wait_for(&mut r2, "a leader after fm3 stopped", |s| {
        s.leader.is_some() && s.has_quorum
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_status(lb_port, "/readyz") != 200 {
        assert!(
            Instant::now() < deadline,
            "the load balancer answers /readyz"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
