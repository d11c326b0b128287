//! Clients through the management API over WebSocket (WAMP-CBOR, the superuser's
//! cryptosign key), a session per replica, opened again after a failure.

use std::time::{Duration, Instant};

use fabric_master::store::model::Oid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use fabric_master::client::{Client, ClientConfig, ClientError};
use fabric_master::wamp::serializer::Serializer;
use fabric_master::wamp::{Dict, Payload, Protocol, Value};

use crate::common::linearizability::{Operation, RegOp};
use crate::sim_node::{NO_SUCH_WORKER, WORKER_EXISTS, sim_node_name};
use crate::{CHAOS_MREALM, CHAOS_TRACE, History, PAIRS, Peers, WORKERS};

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
pub async fn wamp_client(
    id: usize,
    seed: u64,
    urls: Peers,
    key: ed25519_dalek::SigningKey,
    keys: Vec<Oid>,
    node_oids: Vec<String>,
    started: Instant,
    until: Instant,
    history: History,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64 + 101).wrapping_mul(0x9e37_79b9));
    let ns = |t: Instant| t.duration_since(started).as_nanos() as u64;
    // A session per replica and realm: the global realm for organizations and pairing, the
    // management realm for its traces and its node's workers.
    let mut sessions: std::collections::HashMap<(String, bool), Client> = Default::default();
    let mut n = 0;
    while Instant::now() < until {
        let url = {
            let urls = urls.read();
            urls[rng.gen_range(0..urls.len())].clone()
        };
        let k = rng.gen_range(0..keys.len() + PAIRS + 1 + WORKERS);
        let in_mrealm = k >= keys.len() + PAIRS;
        let slot = (url.clone(), in_mrealm);
        let session = match sessions.get(&slot) {
            Some(s) => s.clone(),
            None => {
                let realm = if in_mrealm {
                    CHAOS_MREALM
                } else {
                    "com.crossbario.fabric"
                };
                match tokio::time::timeout(Duration::from_secs(2), superuser(&url, realm, &key))
                    .await
                {
                    Ok(Ok(c)) => {
                        sessions.insert(slot.clone(), c.clone());
                        c
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        if in_mrealm {
            let register = k - keys.len() - PAIRS;
            n += 1;
            let call = ((id as u64) << 32) | n as u64;
            let outcome = if register == 0 {
                trace_call(&session, &mut rng, id, call, started).await
            } else {
                worker_call(
                    &session,
                    &mut rng,
                    id,
                    call,
                    register - 1,
                    // Worker registers alternate between the nodes.
                    &node_oids[(register - 1) % node_oids.len()],
                    started,
                )
                .await
            };
            if outcome.lost {
                sessions.remove(&slot);
            }
            history.lock()[k].extend(outcome.ops);
            continue;
        }
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
                        sessions.remove(&slot);
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
                        sessions.remove(&slot);
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
                        sessions.remove(&slot);
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
                    sessions.remove(&slot);
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

/// A session of the superuser (WAMP-CBOR, cryptosign) on `realm`.
async fn superuser(
    url: &str,
    realm: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<Client, ClientError> {
    Client::connect(&ClientConfig {
        url: url.to_owned(),
        realm: Some(realm.into()),
        protocol: Protocol {
            serializer: Serializer::Cbor,
            batched: false,
        },
        authid: Some("superuser".into()),
        authrole: None,
        key: Some(key.clone()),
    })
    .await
}

/// What one call did to its register; `lost`: the session failed (open another).
struct Outcome {
    ops: Vec<Operation>,
    lost: bool,
}

/// A status change of a trace (`api/tracing`): from one of these, through the middle
/// status, to the last.
type TraceChange = (&'static [&'static str], &'static str, &'static str);
/// A start moves a trace stopped → starting → running, a stop running or stopping_failed →
/// stopping → stopped (it traces no workers: nothing fails).
const TRACE_START: TraceChange = (&["stopped"], "starting", "running");
const TRACE_STOP: TraceChange = (&["running", "stopping_failed"], "stopping", "stopped");

/// A call that took effect, or may have (`complete` none), as its two compare-and-sets.
fn two_steps(
    client: usize,
    call: u64,
    (from, mid, to): TraceChange,
    invoke: u64,
    complete: Option<u64>,
) -> Vec<Operation> {
    let step = |place: u8, from: Vec<String>, to: &str| Operation {
        client,
        op: RegOp::Cas {
            from,
            to: to.into(),
            step: Some((call, place)),
        },
        invoke,
        complete,
    };
    vec![
        step(0, from.iter().map(|s| s.to_string()).collect(), mid),
        step(1, vec![mid.to_string()], to),
    ]
}

/// `start_trace`, `stop_trace` or `get_trace` of the run's trace: a compare-and-set register.
/// A refusal (`cannot_start`, `cannot_stop`) is an observation too: the status was none of
/// those the call starts from, and the call changed nothing.
async fn trace_call(
    session: &Client,
    rng: &mut StdRng,
    client: usize,
    call: u64,
    started: Instant,
) -> Outcome {
    let ns = |t: Instant| t.duration_since(started).as_nanos() as u64;
    let roll: f64 = rng.r#gen();
    let (procedure, change) = if roll < 0.35 {
        ("start_trace", Some(TRACE_START))
    } else if roll < 0.7 {
        ("stop_trace", Some(TRACE_STOP))
    } else {
        ("get_trace", None)
    };
    let invoke = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(4),
        session.call(
            &format!("crossbarfabriccenter.mrealm.{procedure}"),
            Payload::args(vec![Value::Str(CHAOS_TRACE.into())]),
            Dict::new(),
        ),
    )
    .await;
    let lost = !matches!(answer, Ok(Ok(_)) | Ok(Err(ClientError::Wamp { .. })));
    let done = Some(ns(Instant::now()));
    let ops = match (change, answer) {
        (Some(change), Ok(Ok(_))) => two_steps(client, call, change, ns(invoke), done),
        (Some((from, ..)), Ok(Err(ClientError::Wamp { error, .. })))
            if error == "crossbar.error.cannot_start" || error == "crossbar.error.cannot_stop" =>
        {
            vec![Operation {
                client,
                op: RegOp::CasRefused(from.iter().map(|s| s.to_string()).collect()),
                invoke: ns(invoke),
                complete: done,
            }]
        }
        (Some(change), _) => two_steps(client, call, change, ns(invoke), None),
        (None, Ok(Ok(payload))) => {
            let status = payload
                .arg_list()
                .first()
                .and_then(Value::as_dict)
                .and_then(|t| t.get("status"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            vec![Operation {
                client,
                op: RegOp::Read(status),
                invoke: ns(invoke),
                complete: done,
            }]
        }
        (None, _) => vec![],
    };
    Outcome { ops, lost }
}

/// `remote.node.start_worker`, `stop_worker` or `get_worker` of worker `w<register>` on a
/// simulated node, through whichever replica the session is on: a register whose value is
/// the tag the worker was started with, absent while no such worker runs.
async fn worker_call(
    session: &Client,
    rng: &mut StdRng,
    client: usize,
    call: u64,
    register: usize,
    node_oid: &str,
    started: Instant,
) -> Outcome {
    let ns = |t: Instant| t.duration_since(started).as_nanos() as u64;
    let worker = Value::Str(format!("w{register}"));
    let oid = Value::Str(node_oid.to_owned());
    let roll: f64 = rng.r#gen();
    let tag = format!("t{client}-{}", call & 0xffff_ffff);
    let (procedure, args, write) = if roll < 0.3 {
        let config = Value::Dict(fabric_master::dict! {"tag" => tag.as_str()});
        (
            "start_worker",
            vec![oid, worker, Value::Str("guest".into()), config],
            Some(RegOp::Create(tag)),
        )
    } else if roll < 0.6 {
        ("stop_worker", vec![oid, worker], Some(RegOp::Delete))
    } else {
        ("get_worker", vec![oid, worker], None)
    };
    let invoke = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(4),
        session.call(
            &format!("crossbarfabriccenter.remote.node.{procedure}"),
            Payload::args(args),
            Dict::new(),
        ),
    )
    .await;
    let lost = !matches!(answer, Ok(Ok(_)) | Ok(Err(ClientError::Wamp { .. })));
    let done = Some(ns(Instant::now()));
    let op = |op: RegOp, complete: Option<u64>| Operation {
        client,
        op,
        invoke: ns(invoke),
        complete,
    };
    let ops = match (write, answer) {
        (Some(write), Ok(Ok(_))) => vec![op(write, done)],
        // Refused by the node itself: it never took effect.
        (Some(_), Ok(Err(ClientError::Wamp { error, .. })))
            if error == WORKER_EXISTS || error == NO_SUCH_WORKER =>
        {
            vec![]
        }
        // Refused by the master, lost on the way, timed out: it may have reached the node.
        (Some(write), _) => vec![op(write, None)],
        (None, Ok(Ok(payload))) => {
            let tag = payload
                .arg_list()
                .first()
                .and_then(Value::as_dict)
                .and_then(|w| w.get("tag"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            vec![op(RegOp::Read(tag), done)]
        }
        (None, Ok(Err(ClientError::Wamp { error, .. }))) if error == NO_SUCH_WORKER => {
            vec![op(RegOp::Read(None), done)]
        }
        (None, _) => vec![],
    };
    Outcome { ops, lost }
}

/// The management realm of the WAMP runs: nodes `pair-*` paired and unpaired by the clients,
/// the simulated nodes `sim-<i>` (one per key of `node_keys`) paired for good (their oids
/// returned), and the trace the clients start and stop (no traced workers).
pub async fn set_up_chaos_mrealm(
    url: &str,
    key: &ed25519_dalek::SigningKey,
    node_keys: &[ed25519_dalek::SigningKey],
) -> Vec<String> {
    let su = superuser(url, "com.crossbario.fabric", key)
        .await
        .expect("superuser session");
    let spec = Value::Dict(fabric_master::dict! {"name" => CHAOS_MREALM});
    su.call(
        "crossbarfabriccenter.mrealm.create_mrealm",
        Payload::args(vec![spec]),
        Dict::new(),
    )
    .await
    .expect("the chaos management realm");
    let mut node_oids = Vec::new();
    for (i, node_key) in node_keys.iter().enumerate() {
        let pubkey = hex::encode(node_key.verifying_key().as_bytes());
        let paired = su
            .call(
                "crossbarfabriccenter.mrealm.pair_node",
                Payload::args(vec![
                    Value::Str(pubkey),
                    Value::Str(CHAOS_MREALM.into()),
                    Value::Str(sim_node_name(i)),
                ]),
                Dict::new(),
            )
            .await
            .expect("a simulated node paired");
        let node_oid = paired
            .arg_list()
            .first()
            .and_then(Value::as_dict)
            .and_then(|n| n.get("oid"))
            .and_then(Value::as_str)
            .expect("the paired node's oid")
            .to_owned();
        node_oids.push(node_oid);
    }
    su.close();
    let owner = superuser(url, CHAOS_MREALM, key)
        .await
        .expect("a session on the chaos management realm");
    owner
        .call(
            "crossbarfabriccenter.mrealm.create_trace",
            Payload::args(vec![Value::Str(CHAOS_TRACE.into()), Value::List(vec![])]),
            Dict::new(),
        )
        .await
        .expect("the chaos trace");
    owner.close();
    node_oids
}
