//! The gRPC service among replicas (`proto/peer.proto`): raft RPCs, write forwarding, read
//! index, membership changes, status and backup.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::raft::codec;
use crate::replica::{ProposeError, Replica};
use crate::router::internal::CallError;
use crate::wamp::{Payload, Value};

pub mod relay;

pub mod pb {
    tonic::include_proto!("fabric.peer.v1");
}

use pb::peer_client::PeerClient;

/// One lazily connected channel per peer address, shared by raft and forwarding.
#[derive(Clone, Default)]
pub struct Clients {
    map: Arc<Mutex<HashMap<String, PeerClient<Channel>>>>,
}

impl Clients {
    pub fn get(&self, addr: &str) -> Result<PeerClient<Channel>, tonic::transport::Error> {
        if let Some(c) = self.map.lock().get(addr) {
            return Ok(c.clone());
        }
        let client = PeerClient::new(connect_lazy(addr)?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        self.map.lock().insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

/// A channel to `addr` (`host:port`) that connects on first use and reconnects by itself.
pub fn connect_lazy(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// A client for the CLI: `cluster …` and `backup` talk to one replica.
pub fn client(addr: &str) -> anyhow::Result<PeerClient<Channel>> {
    Ok(PeerClient::new(connect_lazy(addr)?)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializable")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("bad json: {e}")))
}

fn raft_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    codec::decode(bytes).map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

pub struct PeerService {
    replica: Arc<Replica>,
}

impl PeerService {
    pub fn new(replica: Arc<Replica>) -> PeerService {
        PeerService { replica }
    }
}

const BACKUP_CHUNK: usize = 1 << 20;

/// Answers a node call routed here from another replica: (realm, procedure, payload,
/// timeout) → the node's result, or its error.
pub type NodeCallFn = Arc<
    dyn Fn(
            String,
            String,
            Payload,
            Duration,
        ) -> futures_util::future::BoxFuture<'static, Result<Payload, CallError>>
        + Send
        + Sync,
>;

/// A WAMP payload as it travels between replicas.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct WirePayload {
    pub args: Option<Value>,
    /// A `Value::Dict`.
    pub kwargs: Option<Value>,
}

impl From<Payload> for WirePayload {
    fn from(p: Payload) -> WirePayload {
        WirePayload {
            args: p.args,
            kwargs: p.kwargs.map(Value::Dict),
        }
    }
}

impl From<WirePayload> for Payload {
    fn from(p: WirePayload) -> Payload {
        Payload {
            args: p.args,
            kwargs: match p.kwargs {
                Some(Value::Dict(d)) => Some(d),
                _ => None,
            },
        }
    }
}

/// The answer to a routed node call: the result, or (error URI, error payload).
pub type WireResult = Result<WirePayload, (String, WirePayload)>;

/// The error of a routed call that the remote replica could not answer at all.
pub fn unreachable(replica: u64, e: impl std::fmt::Display) -> CallError {
    CallError::new(
        "wamp.error.no_such_procedure",
        format!("replica {replica} holding the node's session cannot be reached: {e}"),
    )
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftBytes>,
    ) -> Result<Response<pb::RaftBytes>, Status> {
        let rpc = raft_decode(&req.into_inner().data)?;
        let res = self.replica.raft.append_entries(rpc).await;
        if res.as_ref().is_ok_and(|r| r.is_success()) {
            self.replica.leader_contacted();
        }
        Ok(Response::new(pb::RaftBytes {
            data: codec::encode(&res),
        }))
    }

    async fn vote(&self, req: Request<pb::RaftBytes>) -> Result<Response<pb::RaftBytes>, Status> {
        let rpc = raft_decode(&req.into_inner().data)?;
        let res = self.replica.raft.vote(rpc).await;
        Ok(Response::new(pb::RaftBytes {
            data: codec::encode(&res),
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftBytes>,
    ) -> Result<Response<pb::RaftBytes>, Status> {
        let rpc = raft_decode(&req.into_inner().data)?;
        let res = self.replica.raft.install_snapshot(rpc).await;
        Ok(Response::new(pb::RaftBytes {
            data: codec::encode(&res),
        }))
    }

    async fn propose(
        &self,
        req: Request<pb::Proposal>,
    ) -> Result<Response<pb::ProposalReply>, Status> {
        let proposal = req.into_inner();
        let cmd = decode(&proposal.command)?;
        let res: Result<serde_json::Value, ProposeError> = if proposal.forwarded {
            self.replica.propose_here(cmd).await
        } else {
            self.replica.propose(cmd).await
        };
        Ok(Response::new(pb::ProposalReply { result: json(&res) }))
    }

    async fn read_index(
        &self,
        _req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexReply>, Status> {
        let index = self
            .replica
            .leader_read_index()
            .await
            .map_err(Status::unavailable)?;
        Ok(Response::new(pb::ReadIndexReply { index }))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(pb::StatusReply {
            json: json(&self.replica.status()),
        }))
    }

    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let r = req.into_inner();
        let res = self.replica.join(r.node_id, r.addr, r.voter).await;
        Ok(Response::new(pb::MembershipReply { json: json(&res) }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let res = self.replica.remove(req.into_inner().node_id).await;
        Ok(Response::new(pb::MembershipReply { json: json(&res) }))
    }

    async fn trigger_elect(
        &self,
        _req: Request<pb::ElectRequest>,
    ) -> Result<Response<pb::ElectReply>, Status> {
        self.replica
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ElectReply {}))
    }

    async fn query(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryReply>, Status> {
        let q = decode(&req.into_inner().query)?;
        let res = self.replica.query(q).await;
        Ok(Response::new(pb::QueryReply { result: json(&res) }))
    }

    async fn call_node(
        &self,
        req: Request<pb::NodeCall>,
    ) -> Result<Response<pb::NodeCallReply>, Status> {
        let call = req.into_inner();
        let payload: WirePayload = codec::decode(&call.payload)
            .map_err(|e| Status::invalid_argument(format!("bad payload: {e}")))?;
        let Some(answer) = self.replica.node_calls.get() else {
            return Err(Status::unavailable(
                "this replica does not serve node calls yet",
            ));
        };
        let timeout = Duration::from_millis(call.timeout_ms.clamp(1, 600_000));
        let res: WireResult = answer(call.realm, call.procedure, payload.into(), timeout)
            .await
            .map(WirePayload::from)
            .map_err(|e| {
                let uri = e.uri.clone();
                let payload = e
                    .payload
                    .clone()
                    .map(|p| *p)
                    .unwrap_or_else(|| Payload::args(vec![Value::Str(e.message.clone())]));
                (uri, WirePayload::from(payload))
            });
        Ok(Response::new(pb::NodeCallReply {
            result: codec::encode(&res),
        }))
    }

    async fn relay_events(
        &self,
        req: Request<pb::RelayedEvents>,
    ) -> Result<Response<pb::RelayedEventsReply>, Status> {
        let batch = req.into_inner();
        let events: Vec<relay::WireEvent> = codec::decode(&batch.events)
            .map_err(|e| Status::invalid_argument(format!("bad relayed events: {e}")))?;
        // Before the router is up there is no one to deliver to.
        if let Some(deliver) = self.replica.relayed_events.get() {
            deliver(events);
        }
        Ok(Response::new(pb::RelayedEventsReply {}))
    }

    type BackupStream =
        futures_util::stream::Iter<std::vec::IntoIter<Result<pb::BackupChunk, Status>>>;

    async fn backup(
        &self,
        _req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let data = self
            .replica
            .backup()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let chunks: Vec<_> = data
            .chunks(BACKUP_CHUNK)
            .map(|c| Ok(pb::BackupChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(futures_util::stream::iter(chunks)))
    }
}

/// Serves the peer service until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, replica: Arc<Replica>) -> anyhow::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::debug!("peer service on {local}");
    tonic::transport::Server::builder()
        .add_service(
            pb::peer_server::PeerServer::new(PeerService::new(replica))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
