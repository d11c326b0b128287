//! The fault runner: three replica processes on loopback, clients writing and reading
//! registers (the labels of organizations) through every replica at once, while a nemesis
//! kills (-9) and freezes (SIGSTOP) replicas, leader included, while learners join and leave,
//! follower voters are replaced by fresh replicas, and replica 2's wall clock jumps hours
//! ahead or back (libfaketime); every key's recorded history is then checked for
//! linearizability (`common::linearizability`).
//!
//! Each seed also draws Raft's timing (heartbeat, election timeout, snapshot interval).
//! In CI: a fixed set of seeds, 20 s each. Longer runs, and a failing seed replayed:
//! `CHAOS_SEEDS=7,8 CHAOS_SECONDS=600 cargo test --release --test chaos -- --nocapture`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::linearizability::{Operation, RegOp, Verdict, check};
use common::*;
use fabric_master::replica::{ProposeError, Query};
use fabric_master::store::model::Oid;
use fabric_master::store::{Command, Kind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// libfaketime for threaded programs (Debian package `faketime`).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

const KEYS: usize = 3;
/// Pairing registers of the WAMP runs: nodes paired, unpaired and looked up by name.
const PAIRS: usize = 2;
/// The management realm of those nodes.
const CHAOS_MREALM: &str = "chaos";
/// Every register's value when the history begins.
const INITIAL: &str = "initial";

/// An organization `oid` created (again) with `label`, under a name of its own.
fn org_named(oid: Oid, label: &str) -> Command {
    use fabric_master::store::AnyRecord;
    use fabric_master::store::model::Organization;
    Command::Insert {
        record: AnyRecord::Organization(Organization {
            oid,
            label: Some(label.to_owned()),
            description: None,
            tags: None,
            name: format!("re-{}-{label}", oid.simple()),
            otype: Some(2),
            registered: 1_700_000_000_000_000,
        }),
    }
}
const CLIENTS: usize = 4;

/// What happened to one key, recorded by every client.
type History = Arc<parking_lot::Mutex<Vec<Vec<Operation>>>>;

/// The replicas clients go through: changed by the nemesis when it replaces a voter.
type Peers = Arc<parking_lot::RwLock<Vec<String>>>;

async fn client(
    id: usize,
    seed: u64,
    peers: Peers,
    keys: Vec<Oid>,
    started: Instant,
    until: Instant,
    history: History,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let ns = |t: Instant| t.duration_since(started).as_nanos() as u64;
    let mut n = 0;
    while Instant::now() < until {
        let peer = {
            let peers = peers.read();
            peers[rng.gen_range(0..peers.len())].clone()
        };
        let peer = &peer;
        let k = rng.gen_range(0..keys.len());
        let invoke = Instant::now();
        let roll: f64 = rng.r#gen();
        let op = if roll < 0.5 {
            n += 1;
            let value = format!("c{id}-{n}");
            // Most writes modify; some delete the organization or create it again.
            let (op, cmd) = if roll < 0.05 {
                (
                    RegOp::Delete,
                    Command::Delete {
                        kind: Kind::Organization,
                        key: keys[k].to_string(),
                        cascade: false,
                    },
                )
            } else if roll < 0.1 {
                (RegOp::Create(value.clone()), org_named(keys[k], &value))
            } else {
                (RegOp::Modify(value.clone()), relabel(keys[k], &value))
            };
            let answer = tokio::time::timeout(Duration::from_secs(3), propose(peer, &cmd)).await;
            let complete = match answer {
                Ok(Ok(_)) => Some(ns(Instant::now())),
                // A definite refusal: it never took effect; left out of the history.
                Ok(Err(ProposeError::Refused(_))) => continue,
                // Timed out or lost: it may yet take effect.
                _ => None,
            };
            Operation {
                client: id,
                op,
                invoke: ns(invoke),
                complete,
            }
        } else {
            let q = Query::Get {
                kind: Kind::Organization,
                key: keys[k].to_string(),
            };
            match tokio::time::timeout(Duration::from_secs(3), query(peer, &q)).await {
                Ok(Ok(org)) => Operation {
                    client: id,
                    op: RegOp::Read(org["label"].as_str().map(str::to_owned)),
                    invoke: ns(invoke),
                    complete: Some(ns(Instant::now())),
                },
                // A failed read tells nothing.
                _ => continue,
            }
        };
        history.lock()[k].push(op);
    }
}

/// Whether `error` (a WAMP error URI) says the call was refused before it could take effect.
fn definitely_refused(error: &str) -> bool {
    matches!(
        error,
        "wamp.error.invalid_argument"
            | "wamp.error.not_authorized"
            | "crossbar.error.no_such_object"
            | "crossbar.error.already_exists"
            | "fabric.node-already-paired"
            | "wamp.error.no_such_procedure"
    )
}

/// As `client`, through the management API over WebSocket (WAMP-CBOR, the superuser's
/// cryptosign key): `modify_organization` and `get_organization` on random replicas, a
/// session per replica, opened again after a failure.
#[allow(clippy::too_many_arguments)]
async fn wamp_client(
    id: usize,
    seed: u64,
    urls: Arc<parking_lot::RwLock<Vec<String>>>,
    key: ed25519_dalek::SigningKey,
    keys: Vec<Oid>,
    started: Instant,
    until: Instant,
    history: History,
) {
    use fabric_master::client::{Client, ClientConfig, ClientError};
    use fabric_master::wamp::serializer::Serializer;
    use fabric_master::wamp::{Dict, Payload, Protocol, Value};
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64 + 101).wrapping_mul(0x9e37_79b9));
    let ns = |t: Instant| t.duration_since(started).as_nanos() as u64;
    let mut sessions: std::collections::HashMap<String, Client> = Default::default();
    let mut n = 0;
    while Instant::now() < until {
        let url = {
            let urls = urls.read();
            urls[rng.gen_range(0..urls.len())].clone()
        };
        let session = match sessions.get(&url) {
            Some(s) => s.clone(),
            None => {
                let cfg = ClientConfig {
                    url: url.clone(),
                    realm: Some("com.crossbario.fabric".into()),
                    protocol: Protocol {
                        serializer: Serializer::Cbor,
                        batched: false,
                    },
                    authid: Some("superuser".into()),
                    authrole: None,
                    key: Some(key.clone()),
                };
                match tokio::time::timeout(Duration::from_secs(2), Client::connect(&cfg)).await {
                    Ok(Ok(c)) => {
                        sessions.insert(url.clone(), c.clone());
                        c
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        let k = rng.gen_range(0..keys.len() + PAIRS);
        let invoke = Instant::now();
        if k >= keys.len() {
            // A pairing register: node `pair-<i>` of management realm CHAOS_MREALM, its value
            // the public key it is paired with, absent while unpaired.
            let authid = Value::Str(format!("pair-{}", k - keys.len()));
            let realm = Value::Str(CHAOS_MREALM.into());
            let roll: f64 = rng.r#gen();
            let (procedure, args, op) = if roll < 0.25 {
                let pubkey = hex::encode(rng.r#gen::<[u8; 32]>());
                (
                    "pair_node",
                    vec![Value::Str(pubkey.clone()), realm, authid],
                    Some(RegOp::Create(pubkey)),
                )
            } else if roll < 0.5 {
                (
                    "unpair_node_by_name",
                    vec![realm, authid],
                    Some(RegOp::Delete),
                )
            } else {
                ("get_node_by_name", vec![realm, authid], None)
            };
            let answer = tokio::time::timeout(
                Duration::from_secs(4),
                session.call(
                    &format!("crossbarfabriccenter.mrealm.{procedure}"),
                    Payload::args(args),
                    Dict::new(),
                ),
            )
            .await;
            let recorded = match (op, answer) {
                (Some(op), Ok(Ok(_))) => Some((op, Some(ns(Instant::now())))),
                (Some(_), Ok(Err(ClientError::Wamp { error, .. })))
                    if definitely_refused(&error) =>
                {
                    None
                }
                (Some(op), other) => {
                    if !matches!(other, Ok(Err(ClientError::Wamp { .. }))) {
                        sessions.remove(&url);
                    }
                    Some((op, None))
                }
                (None, Ok(Ok(payload))) => {
                    let pubkey = payload
                        .arg_list()
                        .first()
                        .and_then(Value::as_dict)
                        .and_then(|o| o.get("pubkey"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    Some((RegOp::Read(pubkey), Some(ns(Instant::now()))))
                }
                (None, Ok(Err(ClientError::Wamp { error, .. })))
                    if error == "crossbar.error.no_such_object" =>
                {
                    Some((RegOp::Read(None), Some(ns(Instant::now()))))
                }
                (None, other) => {
                    if !matches!(other, Ok(Err(ClientError::Wamp { .. }))) {
                        sessions.remove(&url);
                    }
                    None
                }
            };
            if let Some((op, complete)) = recorded {
                history.lock()[k].push(Operation {
                    client: id,
                    op,
                    invoke: ns(invoke),
                    complete,
                });
            }
            continue;
        }
        let oid = Value::Str(keys[k].to_string());
        let op = if rng.gen_bool(0.5) {
            n += 1;
            let value = format!("w{id}-{n}");
            let mut delta = Dict::new();
            delta.insert("label".into(), Value::Str(value.clone()));
            let answer = tokio::time::timeout(
                Duration::from_secs(4),
                session.call(
                    "crossbarfabriccenter.user.modify_organization",
                    Payload::args(vec![oid, Value::Dict(delta)]),
                    Dict::new(),
                ),
            )
            .await;
            let complete = match answer {
                Ok(Ok(_)) => Some(ns(Instant::now())),
                Ok(Err(ClientError::Wamp { error, .. })) if definitely_refused(&error) => continue,
                // No quorum, a timeout, a lost session: it may yet take effect.
                other => {
                    if !matches!(other, Ok(Err(ClientError::Wamp { .. }))) {
                        sessions.remove(&url);
                    }
                    None
                }
            };
            Operation {
                client: id,
                op: RegOp::Modify(value),
                invoke: ns(invoke),
                complete,
            }
        } else {
            let answer = tokio::time::timeout(
                Duration::from_secs(4),
                session.call(
                    "crossbarfabriccenter.user.get_organization",
                    Payload::args(vec![oid]),
                    Dict::new(),
                ),
            )
            .await;
            match answer {
                Ok(Ok(payload)) => {
                    let label = payload
                        .arg_list()
                        .first()
                        .and_then(Value::as_dict)
                        .and_then(|o| o.get("label"))
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    Operation {
                        client: id,
                        op: RegOp::Read(label),
                        invoke: ns(invoke),
                        complete: Some(ns(Instant::now())),
                    }
                }
                Ok(Err(ClientError::Wamp { .. })) => continue,
                _ => {
                    sessions.remove(&url);
                    continue;
                }
            }
        };
        history.lock()[k].push(op);
    }
    for s in sessions.values() {
        s.close();
    }
}

/// The management realm whose nodes the WAMP runs pair and unpair.
async fn create_chaos_mrealm(url: &str, key: &ed25519_dalek::SigningKey) {
    use fabric_master::client::{Client, ClientConfig};
    use fabric_master::wamp::serializer::Serializer;
    use fabric_master::wamp::{Dict, Payload, Protocol, Value};
    let cfg = ClientConfig {
        url: url.to_owned(),
        realm: Some("com.crossbario.fabric".into()),
        protocol: Protocol {
            serializer: Serializer::Cbor,
            batched: false,
        },
        authid: Some("superuser".into()),
        authrole: None,
        key: Some(key.clone()),
    };
    let su = Client::connect(&cfg).await.expect("superuser session");
    let mut spec = Dict::new();
    spec.insert("name".into(), Value::Str(CHAOS_MREALM.into()));
    su.call(
        "crossbarfabriccenter.mrealm.create_mrealm",
        Payload::args(vec![Value::Dict(spec)]),
        Dict::new(),
    )
    .await
    .expect("the chaos management realm");
    su.close();
}

fn ws_url(r: &Replica) -> String {
    format!("ws://127.0.0.1:{}/ws", r.ws_port)
}

/// The membership side of the nemesis: a learner that comes and goes, and voters replaced.
struct Membership {
    root: std::path::PathBuf,
    /// libfaketime's offset file for replica 2's wall clock.
    clock_file: std::path::PathBuf,
    timing: Vec<String>,
    next_id: u64,
    learner: Option<Replica>,
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
    /// or the log; clients move from the old address to the new one.
    async fn replace_a_voter(
        &mut self,
        replicas: &mut [Replica],
        peers: &Peers,
        urls: &Peers,
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
        format!("voter {old} removed and replaced by a fresh replica {id}")
    }
}

/// Kills or freezes one replica at a time (a quorum always remains), every 1.5–3.5 s; now
/// and then a learner joins or leaves, or a follower voter is replaced, while faults go on.
async fn nemesis(
    replicas: &mut [Replica],
    membership: &mut Membership,
    peers: &Peers,
    urls: &Peers,
    seed: u64,
    until: Instant,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Vec::new();
    while Instant::now() + Duration::from_secs(4) < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1500..3500))).await;
        let roll: f64 = rng.r#gen();
        if roll < 0.2 {
            log.push(membership.learner_comes_or_goes(replicas).await);
            continue;
        }
        if roll < 0.3 {
            log.push(membership.replace_a_voter(replicas, peers, urls).await);
            continue;
        }
        if roll < 0.45 {
            // Replica 2's wall clock jumps (libfaketime): hours ahead or behind, only the
            // wall clock, as NTP or an operator would move it; leases run on the monotonic one.
            let seconds: i64 = rng.gen_range(60..7200) * if rng.gen_bool(0.5) { 1 } else { -1 };
            std::fs::write(&membership.clock_file, format!("{seconds:+}")).unwrap();
            log.push(format!(
                "the wall clock of replica 2 jumped to {seconds:+} s"
            ));
            continue;
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
        if rng.gen_bool(0.5) {
            log.push(format!(
                "kill -9 replica {} for {pause:?}",
                replicas[victim].id
            ));
            replicas[victim].kill();
            tokio::time::sleep(pause).await;
            replicas[victim].start();
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

/// Raft's timing for a run, drawn from its seed: heartbeat 50–150 ms, election timeout 3–8
/// heartbeats (at least 300 ms on a shared machine), a snapshot every 20–1000 entries (so some
/// runs snapshot, and install snapshots, under faults).
fn timing(seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31) + 7);
    let heartbeat: u64 = rng.gen_range(50..=150);
    let election = (heartbeat * rng.gen_range(3..=8)).max(300);
    let snapshot: u64 = rng.gen_range(20..=1000);
    [
        ("--raft-heartbeat-ms", heartbeat),
        ("--raft-election-timeout-ms", election),
        ("--raft-snapshot-logs", snapshot),
    ]
    .into_iter()
    .flat_map(|(flag, v)| [flag.to_string(), v.to_string()])
    .collect()
}

/// How the clients reach the registers.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// `Modify` proposals and linearizable `Get` queries on the peer port.
    PeerPort,
    /// `modify_organization` / `get_organization` over WebSocket, as the superuser.
    Wamp,
}

async fn run(seed: u64, seconds: u64, via: Via) {
    let root = tempfile::tempdir().unwrap();
    // Every replica (and every one the nemesis adds) trusts the same superuser key.
    let superuser = ed25519_dalek::SigningKey::from_bytes(&[seed as u8 ^ 0x5a; 32]);
    let (_, su_pub) = fabric_master::auth::keyfile::write_key_pair(
        root.path(),
        "superuser",
        &superuser,
        "superuser",
    )
    .unwrap();
    let mut timing = timing(seed);
    timing.extend([
        "--superuser".to_string(),
        su_pub.to_str().unwrap().to_string(),
    ]);
    let mut replicas = three_with(root.path(), &timing).await;
    let peers: Peers = Arc::new(parking_lot::RwLock::new(
        replicas.iter().map(|r| r.peer()).collect(),
    ));
    let urls: Peers = Arc::new(parking_lot::RwLock::new(
        replicas.iter().map(ws_url).collect(),
    ));
    let mut keys = Vec::new();
    for n in 0..KEYS {
        let (oid, create) = org(n as u64);
        propose(&replicas[0].peer(), &create)
            .await
            .expect("created");
        // Every register starts present with a value: absent reads as "no value".
        propose(&replicas[0].peer(), &relabel(oid, INITIAL))
            .await
            .expect("labelled");
        keys.push(oid);
    }
    // Replica 2 runs under libfaketime from here on, its wall clock moved by the nemesis.
    let clock_file = root.path().join("clock-of-replica-2");
    std::fs::write(&clock_file, "+0").unwrap();
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: apt-get install faketime (.ci/run does)"
    );
    replicas[1].kill();
    replicas[1].env.extend(
        [
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", clock_file.to_str().unwrap()),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    replicas[1].start();
    wait_for(
        &replicas[1].peer(),
        "replica 2 back under libfaketime",
        |s| s.has_quorum,
    )
    .await;
    let mut membership = Membership {
        root: root.path().to_path_buf(),
        clock_file,
        timing: timing.clone(),
        next_id: 100,
        learner: None,
    };
    let registers = if via == Via::Wamp { KEYS + PAIRS } else { KEYS };
    let history: History = Arc::new(parking_lot::Mutex::new(vec![Vec::new(); registers]));
    if via == Via::Wamp {
        create_chaos_mrealm(&ws_url(&replicas[0]), &superuser).await;
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| match via {
            Via::PeerPort => tokio::spawn(client(
                id,
                seed,
                peers.clone(),
                keys.clone(),
                started,
                until,
                history.clone(),
            )),
            Via::Wamp => tokio::spawn(wamp_client(
                id,
                seed,
                urls.clone(),
                superuser.clone(),
                keys.clone(),
                started,
                until,
                history.clone(),
            )),
        })
        .collect();
    let faults = nemesis(&mut replicas, &mut membership, &peers, &urls, seed, until).await;
    for c in clients {
        c.await.unwrap();
    }
    // Healed: every replica reads every key once more; these reads must fit the history too.
    for r in &replicas {
        wait_for(&r.peer(), "a leader and three voters", |s| {
            s.leader.is_some() && s.voters.len() == 3
        })
        .await;
    }
    let final_reads = tokio::spawn(client(
        CLIENTS,
        seed,
        peers.clone(),
        keys.clone(),
        started,
        Instant::now() + Duration::from_secs(2),
        history.clone(),
    ));
    final_reads.await.unwrap();
    let history = history.lock().clone();
    let total: usize = history.iter().map(Vec::len).sum();
    let unknown: usize = history
        .iter()
        .flatten()
        .filter(|o| o.complete.is_none())
        .count();
    let acked = |f: fn(&RegOp) -> bool| {
        history
            .iter()
            .flatten()
            .filter(|o| o.complete.is_some() && f(&o.op))
            .count()
    };
    let (deletes, creates) = (
        acked(|o| matches!(o, RegOp::Delete)),
        acked(|o| matches!(o, RegOp::Create(_))),
    );
    let via_name = if via == Via::Wamp { " (WAMP)" } else { "" };
    println!(
        "seed {seed}{via_name}: {total} operations ({deletes} deletes and {creates} creates acknowledged) ({unknown} with unknown outcome) over {seconds} s; \
         timing {timing:?}; faults: {faults:?}"
    );
    for (k, ops) in history.iter().enumerate() {
        // Organizations start labelled, pairing registers unpaired.
        let initial = (k < KEYS).then(|| INITIAL.to_string());
        match check(initial, ops, Duration::from_secs(60)) {
            Verdict::Linearizable => {}
            Verdict::Unknown => println!("seed {seed}: key {k}: checker ran out of time"),
            Verdict::NotLinearizable(why) => {
                panic!(
                    "seed {seed}: key {k} ({} operations) is not linearizable: {why}",
                    ops.len()
                )
            }
        }
    }
    // One fault per 1.5–3.5 s pause plus its own duration: at least one per 6 s.
    assert!(
        faults.len() >= (seconds as usize / 6).max(1),
        "the nemesis ran: {faults:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_kills_and_pauses_are_linearizable() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let seeds: Vec<u64> = std::env::var("CHAOS_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    let seconds = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for seed in seeds {
        run(seed, seconds, Via::PeerPort).await;
    }
}

/// The same faults, the clients going through the management API over WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wamp_histories_under_faults_are_linearizable() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let seeds: Vec<u64> = std::env::var("CHAOS_WAMP_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![5]);
    let seconds = std::env::var("CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for seed in seeds {
        run(seed, seconds, Via::Wamp).await;
    }
}

// ---- the checker's own tests ----------------------------------------------------------------

fn w(client: usize, v: &str, invoke: u64, complete: Option<u64>) -> Operation {
    Operation {
        client,
        op: RegOp::Write(v.into()),
        invoke,
        complete,
    }
}

fn r(client: usize, v: Option<&str>, invoke: u64, complete: u64) -> Operation {
    Operation {
        client,
        op: RegOp::Read(v.map(str::to_owned)),
        invoke,
        complete: Some(complete),
    }
}

fn verdict(ops: &[Operation]) -> Verdict {
    check(None, ops, Duration::from_secs(5))
}

#[test]
fn sequential_and_overlapping_histories_are_linearizable() {
    assert_eq!(
        verdict(&[w(0, "a", 0, Some(10)), r(1, Some("a"), 20, 30)]),
        Verdict::Linearizable
    );
    // Concurrent write and read: the read may see the old or the new value.
    assert_eq!(
        verdict(&[
            w(0, "a", 0, Some(10)),
            w(0, "b", 20, Some(40)),
            r(1, Some("a"), 25, 30)
        ]),
        Verdict::Linearizable
    );
    assert_eq!(
        verdict(&[
            w(0, "a", 0, Some(10)),
            w(0, "b", 20, Some(40)),
            r(1, Some("b"), 25, 30)
        ]),
        Verdict::Linearizable
    );
    // A write with unknown outcome may take effect late, or never.
    assert_eq!(
        verdict(&[
            w(0, "a", 0, None),
            r(1, None, 5, 6),
            r(1, Some("a"), 100, 110)
        ]),
        Verdict::Linearizable
    );
    assert_eq!(
        verdict(&[w(0, "a", 0, None), r(1, None, 100, 110)]),
        Verdict::Linearizable
    );
}

#[test]
fn stale_reads_and_invented_values_are_not_linearizable() {
    // The stale read of issue 12: b acknowledged before the read began, the read saw a.
    assert!(matches!(
        verdict(&[
            w(0, "a", 0, Some(10)),
            w(1, "b", 20, Some(30)),
            r(2, Some("a"), 40, 50)
        ]),
        Verdict::NotLinearizable(_)
    ));
    // A value nobody wrote (or a refused write's, which is left out of the history).
    assert!(matches!(
        verdict(&[w(0, "a", 0, Some(10)), r(1, Some("z"), 20, 30)]),
        Verdict::NotLinearizable(_)
    ));
    // Two reads that disagree on the order of two writes.
    assert!(matches!(
        verdict(&[
            w(0, "a", 0, Some(100)),
            w(1, "b", 0, Some(100)),
            r(2, Some("a"), 110, 120),
            r(3, Some("b"), 130, 140),
            r(2, Some("a"), 150, 160),
        ]),
        Verdict::NotLinearizable(_)
    ));
    // An acknowledged write lost: read the initial value after it completed.
    assert!(matches!(
        verdict(&[w(0, "a", 0, Some(10)), r(1, None, 20, 30)]),
        Verdict::NotLinearizable(_)
    ));
}

#[test]
fn creates_and_deletes_are_checked_against_presence() {
    let op = |client: usize, op: RegOp, invoke: u64, complete: u64| Operation {
        client,
        op,
        invoke,
        complete: Some(complete),
    };
    let init = Some("a".to_string());
    // delete, read absent, create, read the new value: linearizable.
    let ok = [
        op(0, RegOp::Delete, 0, 10),
        op(1, RegOp::Read(None), 20, 30),
        op(0, RegOp::Create("b".into()), 40, 50),
        op(1, RegOp::Read(Some("b".into())), 60, 70),
    ];
    assert_eq!(
        check(init.clone(), &ok, Duration::from_secs(5)),
        Verdict::Linearizable
    );
    // A create that succeeded while the key existed (no delete before it): not linearizable.
    let double_create = [
        op(0, RegOp::Modify("b".into()), 0, 10),
        op(1, RegOp::Create("c".into()), 20, 30),
    ];
    assert!(matches!(
        check(init.clone(), &double_create, Duration::from_secs(5)),
        Verdict::NotLinearizable(_)
    ));
    // A modify acknowledged after a completed delete, with no create between: not linearizable.
    let modify_absent = [
        op(0, RegOp::Delete, 0, 10),
        op(1, RegOp::Modify("b".into()), 20, 30),
    ];
    assert!(matches!(
        check(init.clone(), &modify_absent, Duration::from_secs(5)),
        Verdict::NotLinearizable(_)
    ));
    // The old value read after the delete completed: a stale read.
    let stale = [
        op(0, RegOp::Delete, 0, 10),
        op(1, RegOp::Read(Some("a".into())), 20, 30),
    ];
    assert!(matches!(
        check(init, &stale, Duration::from_secs(5)),
        Verdict::NotLinearizable(_)
    ));
}
