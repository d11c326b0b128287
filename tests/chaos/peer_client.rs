//! Clients on the peer port: `Modify`/`Insert`/`Delete` proposals and linearizable `Get`
//! queries of organizations' labels.

use std::time::{Duration, Instant};

use fabric_master::replica::{ProposeError, Query};
use fabric_master::store::model::Oid;
use fabric_master::store::{Command, Kind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::linearizability::{Operation, RegOp};
use crate::common::*;
use crate::{History, Peers};

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
pub async fn client(
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
