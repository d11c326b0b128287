//! The replica's propose and read paths on a real redb file: a one-voter cluster that
//! commits and reads back, refusals that leave no trace, and a replica without a cluster
//! that fails writes and reads with the typed errors (no quorum) instead of hanging.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_master::raft::open_database;
use fabric_master::replica::{MembershipError, ProposeError, ReadError, Replica};
use fabric_master::store::model::Organization;
use fabric_master::store::{AnyRecord, ApplyError, Command, Kind};
use uuid::Uuid;

async fn replica(dir: &tempfile::TempDir, write_timeout: Duration) -> Arc<Replica> {
    let db = open_database(&dir.path().join("state.redb")).unwrap();
    // A single replica never dials a peer: the advertised address is only recorded.
    Replica::open(
        1,
        "127.0.0.1:1".into(),
        db,
        write_timeout,
        Default::default(),
        3,
        None,
    )
    .await
    .unwrap()
}

async fn leader(dir: &tempfile::TempDir) -> Arc<Replica> {
    let r = replica(dir, Duration::from_secs(5)).await;
    r.bootstrap().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.is_leader() {
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r
}

fn org(name: &str) -> Organization {
    Organization {
        oid: Uuid::new_v4(),
        label: None,
        description: None,
        tags: None,
        name: name.into(),
        otype: None,
        registered: 1,
    }
}

fn insert(o: &Organization) -> Command {
    Command::Insert {
        record: AnyRecord::Organization(o.clone()),
    }
}

#[tokio::test]
async fn an_acknowledged_write_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let r = leader(&dir).await;
    let acme = org("acme");
    let stored = r.propose(insert(&acme)).await.unwrap();
    assert_eq!(stored["name"], "acme");
    let read: Option<Organization> = r.read().await.unwrap().get(&acme.oid.to_string()).unwrap();
    assert_eq!(read.map(|o| o.name).as_deref(), Some("acme"));
    r.shutdown().await;
}

#[tokio::test]
async fn a_refused_write_answers_why_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = leader(&dir).await;
    r.propose(insert(&org("acme"))).await.unwrap();
    let twin = org("acme");
    match r.propose(insert(&twin)).await {
        Err(ProposeError::Refused(ApplyError::AlreadyExists { .. })) => {}
        other => panic!("a second organization named acme: {other:?}"),
    }
    let reader = r.read().await.unwrap();
    assert_eq!(reader.count(Kind::Organization).unwrap(), 1);
    assert!(
        reader
            .get::<Organization>(&twin.oid.to_string())
            .unwrap()
            .is_none()
    );
    r.shutdown().await;
}

#[tokio::test]
async fn concurrent_writes_are_all_applied() {
    let dir = tempfile::tempdir().unwrap();
    let r = leader(&dir).await;
    let writes = (0..200).map(|i| {
        let r = r.clone();
        async move { r.propose(insert(&org(&format!("org{i}")))).await }
    });
    for res in futures_util::future::join_all(writes).await {
        res.unwrap();
    }
    assert_eq!(
        r.read().await.unwrap().count(Kind::Organization).unwrap(),
        200
    );
    r.shutdown().await;
}

#[tokio::test]
async fn without_a_cluster_writes_and_reads_fail_with_no_quorum_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(&dir, Duration::from_millis(300)).await;
    // Each answer comes within the write timeout; the outer deadline only stops a hang.
    let hang = Duration::from_secs(60);
    match tokio::time::timeout(hang, r.propose(insert(&org("acme"))))
        .await
        .expect("the write answered")
    {
        Err(ProposeError::NoQuorum(_)) => {}
        other => panic!("a write without a cluster: {other:?}"),
    }
    match tokio::time::timeout(hang, r.read())
        .await
        .expect("the read answered")
    {
        Err(ReadError::NoQuorum(_)) => {}
        Err(other) => panic!("a read without a cluster: {other}"),
        Ok(_) => panic!("a linearizable read without a cluster succeeded"),
    }
    r.shutdown().await;
}

#[tokio::test]
async fn the_last_voter_cannot_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let r = leader(&dir).await;
    assert_eq!(r.remove(1).await.unwrap_err(), MembershipError::LastVoter);
    assert!(r.status().voters == vec![1]);
    r.shutdown().await;
}

#[tokio::test]
async fn expired_activation_codes_are_purged_and_active_keys_kept() {
    use fabric_master::store::model::{ActivationToken, TOKEN_ACTIVE, TOKEN_PENDING};
    let dir = tempfile::tempdir().unwrap();
    let r = leader(&dir).await;
    let token = |status, created, email: &str| ActivationToken {
        oid: Uuid::new_v4(),
        atype: 1,
        status,
        created,
        completed: None,
        code: "AAAA-BBBB-CCCC".into(),
        email: email.into(),
        pubkey: format!("{:064x}", rand::random::<u64>()),
    };
    let old = token(TOKEN_PENDING, 1_000, "old@example.com");
    let fresh = token(TOKEN_PENDING, 5_000, "fresh@example.com");
    let active = token(TOKEN_ACTIVE, 1_000, "user@example.com");
    for t in [&old, &fresh, &active] {
        r.propose(Command::IssueActivationToken { token: t.clone() })
            .await
            .unwrap();
    }
    let purged = fabric_master::auth::limits::purge_expired(&r, 2_000)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let left: Vec<ActivationToken> = r.read().await.unwrap().list("").unwrap();
    let emails: Vec<&str> = left.iter().map(|t| t.email.as_str()).collect();
    assert_eq!(left.len(), 2, "{emails:?}");
    assert!(!emails.contains(&"old@example.com"));
    r.shutdown().await;
}
