//! The client side of the peer gRPC service (`proto/peer.proto`): the generated code, one
//! lazily connected channel per peer, and the types that travel between replicas.
//!
//! A leaf below Raft and the replica: it knows tonic and the WAMP value types, nothing of
//! the router, the store or openraft, so the Raft network, the replica and the CLI share it
//! without depending on the server (`peer/`).

mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

pub use wire::{WireEvent, WirePayload, WireResult};

pub mod pb {
    tonic::include_proto!("fabric.peer.v1");
}

pub type PeerClient = pb::peer_client::PeerClient<Channel>;

/// One lazily connected channel per peer address, shared by raft and forwarding.
#[derive(Clone, Default)]
pub struct Clients {
    map: Arc<Mutex<HashMap<String, PeerClient>>>,
}

impl Clients {
    pub fn get(&self, addr: &str) -> Result<PeerClient, tonic::transport::Error> {
        if let Some(c) = self.map.lock().get(addr) {
            return Ok(c.clone());
        }
        let client = client(addr)?;
        self.map.lock().insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

/// A channel to `addr` (`host:port`) that connects on first use and reconnects by itself.
fn connect_lazy(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// A client of one replica (the CLI's `cluster …`, `backup`, `state`, and joining).
pub fn client(addr: &str) -> Result<PeerClient, tonic::transport::Error> {
    Ok(PeerClient::new(connect_lazy(addr)?)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}
