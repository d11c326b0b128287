//! Real replicas as processes on loopback: writes through any replica, leader loss,
//! restarts, catching up through a snapshot, backup and restore.

mod common;

use std::time::{Duration, Instant};

use common::*;
use fabric_master::api::errors::refusal_uri;
use fabric_master::replica::ProposeError;
use fabric_master::store::{AnyRecord, Command};
use std::process::Command as Process;

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

/// `cluster add` refuses a replica that holds another cluster's state (here: its own one-voter
/// cluster, from a start with `--bootstrap`) or answers under another id; the cluster goes on
/// writing. A fourth replica joining by itself becomes a learner (3 voters already), serves
/// a write, and leaves the membership on SIGTERM; one killed with SIGKILL is removed by the
/// leader once it has not answered for `--learner-reap-ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_checked_and_learners_come_and_go() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    let replicas = three_with(root.path(), &["--learner-reap-ms".into(), "2000".into()]).await;
    let p1 = replicas[0].peer();
    let bin = env!("CARGO_BIN_EXE_fabric-master");

    let mut stranger = Replica::new(4, root.path(), vec!["--bootstrap".into()]);
    stranger.start();
    wait_for(&stranger.peer(), "its own cluster", |s| s.leader == Some(4)).await;
    let add = |id: &str, addr: &str| {
        Process::new(bin)
            .args([
                "cluster",
                "--peer",
                &p1,
                "add",
                "--node-id",
                id,
                "--addr",
                addr,
                "--learner",
            ])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let refused = add("4", &stranger.peer());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("holds the state of another cluster"),
        "adding a replica with its own cluster: {why}"
    );
    let refused = add("5", &stranger.peer());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("is replica 4, not 5"),
        "adding a replica under the wrong id: {why}"
    );
    let s = status(&p1).await.unwrap();
    assert_eq!(s.nodes.len(), 3, "the membership is unchanged: {s:?}");
    write_many(&p1, 0, 20, 4).await;
    drop(stranger);

    let mut learner = Replica::new(5, root.path(), vec!["--join".into(), p1.clone()]);
    learner.start();
    wait_for(&p1, "replica 5 as a learner", |s| {
        s.learners == vec![5] && s.voters == vec![1, 2, 3]
    })
    .await;
    let acked = write_many(&learner.peer(), 100, 20, 4).await;
    assert_all_present(&learner.peer(), &acked).await;
    signal(&learner, "-TERM");
    wait_for(&p1, "replica 5 gone", |s| !s.nodes.contains_key(&5)).await;

    let mut lost = Replica::new(6, root.path(), vec!["--join".into(), p1.clone()]);
    lost.start();
    wait_for(&p1, "replica 6 as a learner", |s| s.learners == vec![6]).await;
    lost.kill();
    let killed = Instant::now();
    wait_for(&p1, "replica 6 reaped", |s| !s.nodes.contains_key(&6)).await;
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "reaped after {:?}, before its 2 s were up",
        killed.elapsed()
    );
}

/// StatefulSet mode (`--peers-template`, the ordinal from HOSTNAME), as the Helm chart runs
/// the voters: started all at once they form one cluster; pod 0 restarted with an empty data
/// dir does not form a second one but joins theirs, gets the state, and the cluster goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_form_one_cluster_and_pod_0_without_data_rejoins() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let root = tempfile::tempdir().unwrap();
    // Ports PREFIX0..PREFIX2, free now.
    let prefix = loop {
        let p = free_port() / 10;
        if p >= 1000
            && (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", p * 10 + i)).is_ok())
        {
            break p;
        }
    };
    let template = format!("127.0.0.1:{prefix}{{}}");
    let mut pods: Vec<Replica> = (0..3u16)
        .map(|i| {
            let mut r = Replica::new(
                u64::from(i) + 1,
                root.path(),
                vec!["--peers-template".into(), template.clone()],
            );
            r.peer_port = prefix * 10 + i;
            r.env = vec![("HOSTNAME".into(), format!("fm-{i}"))];
            r
        })
        .collect();
    for p in pods.iter_mut() {
        p.start();
    }
    let p1 = pods[1].peer();
    wait_for(&p1, "three voters", |s| {
        s.voters == vec![1, 2, 3] && s.leader.is_some()
    })
    .await;
    let acked = write_many(&p1, 0, 30, 3).await;

    // Pod 0 loses its volume.
    pods[0].kill();
    std::fs::remove_dir_all(&pods[0].data_dir).unwrap();
    pods[0].start();
    let p0 = pods[0].peer();
    wait_for(&p0, "pod 0 back in the one cluster", |s| {
        s.voters == vec![1, 2, 3]
            && s.leader.is_some_and(|l| l != 1 || s.has_quorum)
            && s.has_quorum
    })
    .await;
    // Its join went through: the leader replaced the member that had lost its data.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pods[0].log_tail(400).contains("replica 1 joined through") {
        assert!(
            Instant::now() < deadline,
            "pod 0 never joined:\n{}",
            pods[0].log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(&p1, "replica 1 a voter again", |s| {
        s.voters == vec![1, 2, 3]
    })
    .await;
    assert_all_present(&p0, &acked).await;
    let more = write_many(&p0, 100, 10, 2).await;
    assert_all_present(&p1, &more).await;
    assert_eq!(status(&p1).await.unwrap().nodes.len(), 3);
    if std::env::var_os("KEEP_LOGS").is_some() {
        let logs: Vec<String> = pods.iter().map(|p| p.log_tail(40)).collect();
        println!("{}", logs.join("\n----\n"));
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
