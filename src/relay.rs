//! Publications relayed among replicas (the sending side; `peer` receives): a client connected to one replica subscribes, the
//! publisher (an edge node, another client, a management call served elsewhere) is on
//! another. Each replica sends what its own sessions publish to every other member, one
//! ordered queue per peer; the receiver delivers to its local subscribers and relays nothing.
//!
//! Delivery is at most once, like WAMP's own: a peer that is down or too slow loses events
//! (counted and logged), it never holds up the publisher or the router.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::metrics::meters;
use crate::raft::{NodeId, codec};
use crate::replica::Replica;
use crate::router::{AUDIENCE_OPTIONS, PublicationRelay};
use crate::rpc::{WireEvent, WirePayload, pb};
use crate::wamp::{Dict, Payload, Value};

/// Events waiting for one peer before new ones are dropped.
const QUEUE: usize = 16_384;
/// Events per RPC, at most.
const BATCH: usize = 512;
/// A peer that does not take a batch within this long loses it.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

struct Peer {
    id: NodeId,
    addr: String,
    tx: mpsc::Sender<WireEvent>,
}

pub struct EventRelay {
    me: NodeId,
    peers: RwLock<Vec<Peer>>,
    dropped: Arc<AtomicU64>,
}

impl EventRelay {
    /// Follows the raft membership: a queue and a sender task per other member.
    pub fn start(replica: Arc<Replica>) -> Arc<EventRelay> {
        let relay = Arc::new(EventRelay {
            me: replica.id,
            peers: RwLock::new(Vec::new()),
            dropped: Arc::new(AtomicU64::new(0)),
        });
        let weak = Arc::downgrade(&relay);
        let mut metrics = replica.raft.metrics();
        tokio::spawn(async move {
            loop {
                let members: Vec<(NodeId, String)> = metrics
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.addr.clone()))
                    .collect();
                let Some(relay) = weak.upgrade() else { return };
                relay.follow(&replica, members);
                drop(relay);
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        relay
    }

    /// Keeps the queues of unchanged peers (and their order), opens new ones, and closes the
    /// queues of peers that left (their sender tasks end).
    fn follow(&self, replica: &Arc<Replica>, members: Vec<(NodeId, String)>) {
        let mut peers = self.peers.write();
        let wanted: Vec<(NodeId, String)> = members
            .into_iter()
            .filter(|(id, _)| *id != self.me)
            .collect();
        if peers.len() == wanted.len()
            && peers
                .iter()
                .zip(&wanted)
                .all(|(p, (id, addr))| p.id == *id && &p.addr == addr)
        {
            return;
        }
        let mut old: Vec<Peer> = std::mem::take(&mut *peers);
        for (id, addr) in wanted {
            if let Some(i) = old.iter().position(|p| p.id == id && p.addr == addr) {
                peers.push(old.swap_remove(i));
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(send_loop(
                replica.clone(),
                self.me,
                id,
                addr.clone(),
                rx,
                self.dropped.clone(),
            ));
            tracing::debug!("relaying publications to replica {id} at {addr}");
            peers.push(Peer { id, addr, tx });
        }
    }
}

impl PublicationRelay for EventRelay {
    fn relay(&self, realm: &str, topic: &str, options: &Dict, details: &Dict, payload: &Payload) {
        let peers = self.peers.read();
        if peers.is_empty() {
            return;
        }
        let audience: Dict = options
            .iter()
            .filter(|(k, _)| AUDIENCE_OPTIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let event = WireEvent {
            realm: realm.to_owned(),
            topic: topic.to_owned(),
            options: Value::Dict(audience),
            details: Value::Dict(details.clone()),
            payload: WirePayload::from(payload.clone()),
        };
        for p in peers.iter() {
            if p.tx.try_send(event.clone()).is_ok() {
                meters().relay_queued().inc();
            } else {
                meters().count_relay_dropped(1);
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        "replica {} is not taking relayed publications: {n} dropped so far",
                        p.id
                    );
                }
            }
        }
    }
}

/// Sends one peer's queue in order, in batches, until the queue is closed.
async fn send_loop(
    replica: Arc<Replica>,
    me: NodeId,
    peer: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<WireEvent>,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len() as u64;
        meters().relay_queued().dec_by(n as i64);
        let request = pb::RelayedEvents {
            origin: me,
            events: codec::encode(&batch),
        };
        batch.clear();
        let sent = match replica.clients.get(&addr) {
            Ok(mut client) => {
                match tokio::time::timeout(SEND_TIMEOUT, client.relay_events(request)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(status)) => Err(status.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        if sent.is_ok() {
            meters().count_relayed(n);
        }
        if let Err(e) = sent {
            meters().count_relay_dropped(n);
            let total = dropped.fetch_add(n, Ordering::Relaxed) + n;
            tracing::warn!(
                "{n} publication(s) not relayed to replica {peer} ({e}); {total} dropped so far"
            );
        }
    }
}
