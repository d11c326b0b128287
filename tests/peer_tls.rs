//! The peer port with mutual TLS, as an attacker and as an operator would meet it: real
//! replica processes on loopback with certificates made by `fabric-master certs`.
//!
//! - Without a client certificate, with one from another CA, or in plain text, the
//!   `state`, `cluster` and `backup` commands and raw RPCs get nothing.
//! - With the cluster's certificate they work, and the replicas form a cluster through TLS.
//! - SIGHUP reloads the material: a replica moved to a new CA's certificate serves it to the
//!   next connection, without a restart.
//! - A peer port other hosts can reach is refused without TLS unless `--insecure-peers`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fabric_master::rpc::{client, pb};
use fabric_master::tls::{PeerTls, TlsFiles};

const BIN: &str = env!("CARGO_BIN_EXE_fabric-master");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A CA in `dir/NAME-ca` and certificates `names` issued from it into `dir/NAME`.
fn pki(dir: &Path, name: &str, names: &[&str]) -> PathBuf {
    let ca = dir.join(format!("{name}-ca"));
    let out = dir.join(name);
    ok(run(&["certs", "ca", "--dir", ca.to_str().unwrap()]));
    for n in names {
        ok(run(&[
            "certs",
            "issue",
            "--ca-dir",
            ca.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--name",
            n,
            "--san",
            "127.0.0.1",
        ]));
    }
    std::fs::copy(ca.join("ca.pem"), out.join("ca.pem")).unwrap();
    out
}

/// `--peer-tls-*` flags for certificate `name` in `dir`.
fn tls_flags(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--peer-tls-ca".into(),
        dir.join("ca.pem").display().to_string(),
        "--peer-tls-cert".into(),
        dir.join(format!("{name}.pem")).display().to_string(),
        "--peer-tls-key".into(),
        dir.join(format!("{name}.key")).display().to_string(),
    ]
}

struct Replica {
    child: Child,
    peer: String,
}

impl Replica {
    fn start(root: &Path, id: u64, tls: &[String], formation: &[String]) -> Replica {
        let peer = format!("127.0.0.1:{}", free_port());
        let data = root.join(format!("r{id}"));
        let log = std::fs::File::create(root.join(format!("r{id}.log"))).unwrap();
        let child = Command::new(BIN)
            .arg("start")
            // Stop at once: these tests do not exercise the drain (tests/python/test_cluster.py does).
            .env("FABRIC_DRAIN_DELAY_MS", "0")
            .env("FABRIC_DRAIN_WINDOW_MS", "0")
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--peer-listen", &peer])
            .args(["--node-id", &id.to_string()])
            .arg("--data-dir")
            .arg(&data)
            .args(tls)
            .args(formation)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Replica { child, peer }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cluster status` through `tls`, until `done` holds or 60 s pass.
fn wait_status(peer: &str, tls: &[String], what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut args = vec!["cluster", "--peer", peer];
        args.extend(tls.iter().map(String::as_str));
        args.push("status");
        let out = run(&args);
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if done(&status) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what} within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `args` (a `state`/`cluster`/`backup` command) against `peer` with `tls` flags.
fn command(args: &[&str], peer: &str, tls: &[String]) -> Output {
    let mut all: Vec<String> = vec![args[0].into(), "--peer".into(), peer.into()];
    all.extend(tls.iter().cloned());
    all.extend(args[1..].iter().map(|a| a.to_string()));
    Command::new(BIN).args(&all).output().unwrap()
}

#[test]
fn the_peer_port_answers_only_holders_of_a_cluster_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let good = pki(root, "cluster", &["r1", "r2", "admin"]);
    let evil = pki(root, "evil", &["mallory"]);
    let r1 = Replica::start(root, 1, &tls_flags(&good, "r1"), &["--bootstrap".into()]);
    let r2 = Replica::start(
        root,
        2,
        &tls_flags(&good, "r2"),
        &["--join".into(), r1.peer.clone()],
    );
    let admin = tls_flags(&good, "admin");
    // The replicas formed a cluster through TLS: r2 joined as a voter.
    wait_status(&r1.peer, &admin, "two voters", |s| {
        s["voters"].as_array().is_some_and(|v| v.len() == 2)
    });

    let backup = root.join("state.backup");
    let operations: [&[&str]; 3] = [
        &["state", "list", "organization"],
        &["cluster", "status"],
        &["backup", "--out", backup.to_str().unwrap()],
    ];
    for op in operations {
        for peer in [&r1.peer, &r2.peer] {
            let plain = command(op, peer, &[]);
            assert!(!plain.status.success(), "{op:?} in plain text was answered");
            let foreign = command(op, peer, &tls_flags(&evil, "mallory"));
            assert!(
                !foreign.status.success(),
                "{op:?} with another CA's certificate"
            );
            let operator = command(op, peer, &admin);
            assert!(
                operator.status.success(),
                "{op:?} with the cluster's certificate: {}",
                String::from_utf8_lossy(&operator.stderr)
            );
        }
    }
    assert!(std::fs::metadata(&backup).unwrap().len() > 0);

    // Raw RPCs: a plain-text client and one with a foreign certificate get no answer.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut plain = client(&r1.peer, None).unwrap();
        assert!(plain.status(pb::StatusRequest {}).await.is_err());
        let mallory = PeerTls::load(TlsFiles {
            ca: good.join("ca.pem"),
            cert: evil.join("mallory.pem"),
            key: evil.join("mallory.key"),
        })
        .unwrap();
        let mut foreign = client(&r1.peer, Some(&mallory)).unwrap();
        let refused = foreign
            .propose(pb::Proposal {
                command: b"{}".to_vec(),
                forwarded: true,
            })
            .await;
        assert!(refused.is_err(), "a foreign certificate proposed a write");
    });
}

#[test]
fn sighup_reloads_the_certificates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let old = pki(root, "old", &["r1", "admin"]);
    let new = pki(root, "new", &["r1", "admin"]);
    // The replica reads its material from files the operator replaces.
    let live = root.join("live");
    std::fs::create_dir_all(&live).unwrap();
    for f in ["ca.pem", "r1.pem", "r1.key"] {
        std::fs::copy(old.join(f), live.join(f)).unwrap();
    }
    let r1 = Replica::start(root, 1, &tls_flags(&live, "r1"), &["--bootstrap".into()]);
    wait_status(&r1.peer, &tls_flags(&old, "admin"), "the replica up", |s| {
        s["voters"].as_array().is_some_and(|v| v.len() == 1)
    });
    let status = ["cluster", "status"];
    assert!(
        !command(&status, &r1.peer, &tls_flags(&new, "admin"))
            .status
            .success()
    );

    // Roll to the new CA: the replica trusts both while clients move, and serves its new
    // certificate.
    let both = format!(
        "{}{}",
        std::fs::read_to_string(old.join("ca.pem")).unwrap(),
        std::fs::read_to_string(new.join("ca.pem")).unwrap()
    );
    std::fs::write(live.join("ca.pem"), both).unwrap();
    for f in ["r1.pem", "r1.key"] {
        std::fs::copy(new.join(f), live.join(f)).unwrap();
    }
    let pid = r1.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_status(
        &r1.peer,
        &tls_flags(&new, "admin"),
        "the new certificate served",
        |_| true,
    );
    // Operators still on the old CA's certificate are trusted during the roll, but they no
    // longer trust the replica's new certificate: the roll finishes by giving them the new CA.
    assert!(
        !command(&status, &r1.peer, &tls_flags(&old, "admin"))
            .status
            .success()
    );
    let mut both_admin = tls_flags(&old, "admin");
    both_admin[1] = live.join("ca.pem").display().to_string();
    assert!(command(&status, &r1.peer, &both_admin).status.success());
}

#[test]
fn a_reachable_peer_port_without_tls_is_refused_unless_insisted() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN)
        .arg("start")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--peer-listen", "0.0.0.0:0"])
        .arg("--data-dir")
        .arg(dir.path().join("d1"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("has no TLS"), "{stderr}");
    assert!(stderr.contains("--insecure-peers"), "{stderr}");

    // Advertising a non-loopback address counts too, even when bound to loopback.
    let refused = Command::new(BIN)
        .arg("start")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--peer-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--advertise", "fm-0.fm-peers:9401"])
        .arg("--data-dir")
        .arg(dir.path().join("d2"))
        .output()
        .unwrap();
    assert!(!refused.status.success());

    // With --insecure-peers it starts (and says so); it is then stopped.
    let log = dir.path().join("insecure.log");
    let mut child = Command::new(BIN)
        .arg("start")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--peer-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--advertise", "fm-0.fm-peers:9401"])
        .arg("--insecure-peers")
        .arg("--data-dir")
        .arg(dir.path().join("d3"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("has no TLS")
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(Instant::now() < deadline, "no warning within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
