//! What the Docker tests share: replica containers of the image on a private network (and
//! on the default bridge, where the test reaches them), the test's peer-port client, TLS
//! material, and organizations to write.
#![allow(dead_code)]

pub mod links;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_master::replica::{ProposeError, Query, QueryError, Status};
use fabric_master::rpc::{PeerClient, client, pb};
use fabric_master::store::model::{Oid, Organization};
use fabric_master::store::{AnyRecord, Command, Kind};
use fabric_master::tls::PeerTls;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

pub const IMAGE: &str = "fabric-master";
pub const TAG: &str = "latest";
pub const WRITE_TIMEOUT_MS: u64 = 3000;

/// Runs a docker CLI command; panics with its output when it fails.
pub fn docker(args: &[&str]) -> String {
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
pub struct Replica {
    pub id: u64,
    pub name: String,
    pub container: ContainerAsync<GenericImage>,
    /// Where the test reaches its peer port: its address on Docker's default bridge.
    pub peer: String,
}

impl Replica {
    pub async fn start(
        id: u64,
        network: &str,
        suffix: &str,
        tls_dir: &Path,
        formation: (&str, String),
    ) -> Replica {
        Replica::start_with(id, network, suffix, tls_dir, vec![formation]).await
    }

    /// `start` with more environment (`FABRIC_VOTERS` for a larger cluster).
    pub async fn start_with(
        id: u64,
        network: &str,
        suffix: &str,
        tls_dir: &Path,
        env: Vec<(&str, String)>,
    ) -> Replica {
        let name = format!("fm{id}-{suffix}");
        let mut image = GenericImage::new(IMAGE, TAG)
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
            .with_env_var("FABRIC_DRAIN_WINDOW_MS", "200");
        for (k, v) in env {
            image = image.with_env_var(k, v);
        }
        let container = image
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
pub struct Peers {
    pub tls: Arc<PeerTls>,
}

impl Peers {
    pub fn client(&self, peer: &str) -> PeerClient {
        client(peer, Some(&self.tls)).expect("a lazy client")
    }

    pub async fn status(&self, peer: &str) -> Option<Status> {
        let mut request = tonic::Request::new(pb::StatusRequest {});
        request.set_timeout(Duration::from_secs(2));
        let reply = self.client(peer).status(request).await.ok()?;
        serde_json::from_slice(&reply.into_inner().json).ok()
    }

    pub async fn wait_for(&self, peer: &str, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
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

    pub async fn propose(
        &self,
        peer: &str,
        cmd: &Command,
    ) -> Result<serde_json::Value, ProposeError> {
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

    pub async fn query(&self, peer: &str, q: &Query) -> Result<serde_json::Value, String> {
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

/// The cluster CA, one certificate for every replica (peers check the CA and the name
/// `fabric-master-peer`, not host names) and one for the test; readable by the containers'
/// non-root user.
pub fn make_tls(dir: &Path) {
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

/// A write of organization `oid`'s label: the register the history tests read and write.
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

/// A three-voter cluster of containers on `network`: replica 1 forms it, 2 and 3 join it
/// through `seed` (replica 1's peer name); returned once all three vote, with the test's
/// peer-port client (the operator's certificate of `tls_dir`, made by `make_tls`).
pub struct Three {
    pub replicas: [Replica; 3],
    pub seed: String,
    pub peers: Arc<Peers>,
}

pub async fn start_three(network: &str, suffix: &str, tls_dir: &Path) -> Three {
    let Voters { replicas, peers } = start_voters(3, network, suffix, tls_dir).await;
    let seed = format!("{}:9401", replicas[0].name);
    let Ok(replicas) = <[Replica; 3]>::try_from(replicas) else {
        unreachable!("three replicas started")
    };
    Three {
        replicas,
        seed,
        peers,
    }
}

/// `n` voters (1 bootstraps, the others join it), reached as in `start_three`.
pub async fn start_voters(n: u64, network: &str, suffix: &str, tls_dir: &Path) -> Voters {
    make_tls(tls_dir);
    let peers = Arc::new(Peers {
        tls: PeerTls::load(fabric_master::tls::TlsFiles {
            ca: tls_dir.join("ca.pem"),
            cert: tls_dir.join("operator.pem"),
            key: tls_dir.join("operator.key"),
        })
        .unwrap(),
    });
    let voters = ("FABRIC_VOTERS", n.to_string());
    let first = Replica::start_with(
        1,
        network,
        suffix,
        tls_dir,
        vec![("FABRIC_BOOTSTRAP", "true".into()), voters.clone()],
    )
    .await;
    let seed = format!("{}:9401", first.name);
    let mut replicas = vec![first];
    for id in 2..=n {
        let join = ("FABRIC_JOIN", seed.clone());
        replicas.push(
            Replica::start_with(id, network, suffix, tls_dir, vec![join, voters.clone()]).await,
        );
    }
    let all: Vec<u64> = (1..=n).collect();
    peers
        .wait_for(&replicas[0].peer, "every replica a voter", |s| {
            s.voter_sets == vec![all.clone()]
        })
        .await;
    Voters { replicas, peers }
}

/// A cluster of `start_voters`.
pub struct Voters {
    pub replicas: Vec<Replica>,
    pub peers: Arc<Peers>,
}
