//! Simulated edge nodes for the `remote.*` registers: each joins a random replica as a paired
//! node (cryptosign, role `node`), answers `start_worker`, `stop_worker` and `get_worker` from
//! its own table of workers (each worker's value a tag the caller chose), and joins again,
//! through another random replica, whenever its session is lost. The table outlives its
//! sessions, as a real node's workers outlive its link to the master.
//!
//! What the history of a worker checks is the master's routing: every `remote.node.*` call,
//! sent to any replica, reaches the node at most once and its answer returns to its caller.
//! A call delivered twice (a retry after a failover) or an answer given to another call
//! shows as a value no order explains.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fabric_master::client::{Client, ClientConfig, Handler};
use fabric_master::wamp::serializer::Serializer;
use fabric_master::wamp::{Dict, Payload, Protocol, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Peers;

/// The authid of simulated node `i` in the chaos management realm.
pub fn sim_node_name(i: usize) -> String {
    format!("sim-{i}")
}
/// The node's refusals: a call refused by the node never took effect.
pub const WORKER_EXISTS: &str = "crossbar.error.worker_already_running";
pub const NO_SUCH_WORKER: &str = "crossbar.error.no_such_worker";

type Workers = Arc<parking_lot::Mutex<HashMap<String, String>>>;

fn worker_id(payload: &Payload) -> Result<String, (String, Vec<Value>)> {
    payload
        .arg_list()
        .first()
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ("wamp.error.invalid_argument".into(), vec![]))
}

fn handlers(workers: &Workers) -> Vec<(&'static str, Handler)> {
    let (w1, w2, w3) = (workers.clone(), workers.clone(), workers.clone());
    let start: Handler = Arc::new(move |p: Payload| {
        let id = worker_id(&p)?;
        let tag = p
            .arg_list()
            .get(2)
            .and_then(Value::as_dict)
            .and_then(|c| c.get("tag"))
            .and_then(Value::as_str)
            .ok_or_else(|| ("wamp.error.invalid_argument".to_string(), vec![]))?
            .to_owned();
        let mut w = w1.lock();
        if w.contains_key(&id) {
            return Err((WORKER_EXISTS.into(), vec![Value::Str(id)]));
        }
        w.insert(id.clone(), tag);
        Ok(Payload::args(vec![Value::Dict(
            fabric_master::dict! {"id" => id, "status" => "started"},
        )]))
    });
    let stop: Handler = Arc::new(move |p: Payload| {
        let id = worker_id(&p)?;
        match w2.lock().remove(&id) {
            Some(_) => Ok(Payload::args(vec![Value::Dict(
                fabric_master::dict! {"id" => id, "status" => "stopped"},
            )])),
            None => Err((NO_SUCH_WORKER.into(), vec![Value::Str(id)])),
        }
    });
    let get: Handler = Arc::new(move |p: Payload| {
        let id = worker_id(&p)?;
        match w3.lock().get(&id) {
            Some(tag) => Ok(Payload::args(vec![Value::Dict(
                fabric_master::dict! {"id" => id, "tag" => tag.as_str()},
            )])),
            None => Err((NO_SUCH_WORKER.into(), vec![Value::Str(id)])),
        }
    });
    vec![
        ("start_worker", start),
        ("stop_worker", stop),
        ("get_worker", get),
    ]
}

/// Keeps node `name` joined until `stop`; returns how many times it joined.
pub async fn run(
    name: String,
    key: ed25519_dalek::SigningKey,
    urls: Peers,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> usize {
    let salt = key.verifying_key().as_bytes()[0] as u64 + 0x51;
    let mut rng = StdRng::seed_from_u64(seed ^ salt.wrapping_mul(0x9e37_79b9));
    let workers: Workers = Default::default();
    let mut joins = 0;
    while !stop.load(Ordering::Relaxed) {
        let url = {
            let urls = urls.read();
            urls[rng.gen_range(0..urls.len())].clone()
        };
        let cfg = ClientConfig {
            url,
            realm: None,
            protocol: Protocol {
                serializer: Serializer::Cbor,
                batched: false,
            },
            authid: None,
            authrole: Some("node".into()),
            key: Some(key.clone()),
        };
        let Ok(Ok(session)) =
            tokio::time::timeout(Duration::from_secs(2), Client::connect(&cfg)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut registered = true;
        for (procedure, handler) in handlers(&workers) {
            let node = &name;
            let procedure = format!("crossbarfabriccenter.node.{node}.{procedure}");
            let done = tokio::time::timeout(
                Duration::from_secs(2),
                session.register(&procedure, Dict::new(), handler),
            )
            .await;
            registered &= matches!(done, Ok(Ok(_)));
        }
        if !registered {
            session.close();
            continue;
        }
        joins += 1;
        while !session.is_closed() && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        session.close();
    }
    joins
}
