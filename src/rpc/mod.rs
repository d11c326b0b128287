//! The client side of the peer gRPC service (`proto/peer.proto`): the generated code, one
//! lazily connected channel per peer, and the types that travel between replicas.
//!
//! A leaf below Raft and the replica: it knows tonic and the WAMP value types, nothing of
//! the router, the store or openraft, so the Raft network, the replica and the CLI share it
//! without depending on the server (`peer/`).

mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::tls::PeerTls;

pub use wire::{WireEvent, WirePayload, WireResult};

pub mod pb {
    tonic::include_proto!("fabric.peer.v1");
}

pub type PeerClient = pb::peer_client::PeerClient<Channel>;

/// One lazily connected channel per peer address, shared by raft and forwarding; over
/// mutual TLS when the cluster has it.
#[derive(Clone, Default)]
pub struct Clients {
    map: Arc<Mutex<HashMap<String, PeerClient>>>,
    tls: Option<Arc<PeerTls>>,
    /// The TLS generation the pooled channels were made with.
    made_with: Arc<AtomicU64>,
}

impl Clients {
    pub fn new(tls: Option<Arc<PeerTls>>) -> Clients {
        Clients {
            tls,
            ..Clients::default()
        }
    }

    pub fn get(&self, addr: &str) -> Result<PeerClient, tonic::transport::Error> {
        // Reloaded certificates: new channels present the new ones (open RPCs finish).
        if let Some(tls) = &self.tls {
            let now = tls.generation();
            if self.made_with.swap(now, Ordering::SeqCst) != now {
                self.map.lock().clear();
            }
        }
        if let Some(c) = self.map.lock().get(addr) {
            return Ok(c.clone());
        }
        let client = client(addr, self.tls.as_deref())?;
        self.map.lock().insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

/// A channel to `addr` (`host:port`) that connects on first use and reconnects by itself.
fn connect_lazy(addr: &str, tls: Option<&PeerTls>) -> Result<Channel, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.client_config())?;
    }
    Ok(endpoint.connect_lazy())
}

/// A client of one replica (the CLI's `cluster …`, `backup`, `state`), with the operator's
/// certificate when the cluster uses mutual TLS.
pub fn client(addr: &str, tls: Option<&PeerTls>) -> Result<PeerClient, tonic::transport::Error> {
    Ok(PeerClient::new(connect_lazy(addr, tls)?)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}
