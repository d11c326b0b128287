//! The server side of the gRPC service among replicas (`proto/peer.proto`): raft RPCs, write
//! forwarding, read index, membership changes, status, backup, routed node calls and relayed
//! publications. The client side is `rpc`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tonic::{Request, Response, Status};

use crate::raft::codec;
use crate::replica::{JoinAs, ProposeError, Replica};
use crate::rpc::{WireEvent, WirePayload, WireResult, pb};
use crate::tls::PeerTls;
use crate::wamp::{CallError, Payload, Value};

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializable")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("bad json: {e}")))
}

fn raft_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    codec::decode(bytes).map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))
}

/// Answers a node call routed here from another replica: (realm, procedure, payload,
/// timeout) → the node's result, or its error.
pub type NodeCallFn = Arc<
    dyn Fn(String, String, Payload, Duration) -> BoxFuture<'static, Result<Payload, CallError>>
        + Send
        + Sync,
>;

/// Delivers a batch of publications relayed from another replica to this replica's
/// subscribers.
pub type RelayedEventsFn = Arc<dyn Fn(Vec<WireEvent>) + Send + Sync>;

/// What the service answers with besides the replica: the management API (node calls) and
/// the router (relayed publications), both built before the service starts.
/// How many client sessions this replica holds (for `Status`).
pub type SessionCountFn = Arc<dyn Fn() -> usize + Send + Sync>;

pub struct PeerService {
    replica: Arc<Replica>,
    node_calls: NodeCallFn,
    relayed_events: RelayedEventsFn,
    sessions: SessionCountFn,
}

impl PeerService {
    pub fn new(
        replica: Arc<Replica>,
        node_calls: NodeCallFn,
        relayed_events: RelayedEventsFn,
        sessions: SessionCountFn,
    ) -> PeerService {
        PeerService {
            replica,
            node_calls,
            relayed_events,
            sessions,
        }
    }
}

const BACKUP_CHUNK: usize = 1 << 20;

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
        let mut status = self.replica.status();
        status.sessions = Some((self.sessions)() as u64);
        Ok(Response::new(pb::StatusReply {
            json: json(&status),
        }))
    }

    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let r = req.into_inner();
        let role = JoinAs::from_request(&r);
        let res = self.replica.join(r.node_id, r.addr, role, r.fresh).await;
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

    async fn trigger_snapshot(
        &self,
        _req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotReply>, Status> {
        self.replica
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::SnapshotReply {}))
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
        let timeout = Duration::from_millis(call.timeout_ms.clamp(1, 600_000));
        let res: WireResult =
            (self.node_calls)(call.realm, call.procedure, payload.into(), timeout)
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
        let events: Vec<WireEvent> = codec::decode(&batch.events)
            .map_err(|e| Status::invalid_argument(format!("bad relayed events: {e}")))?;
        (self.relayed_events)(events);
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

/// Serves the peer service until `shutdown` completes: over mutual TLS when `tls` is given
/// (a connection without a certificate signed by the cluster CA never reaches gRPC).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: PeerService,
    tls: Option<Arc<PeerTls>>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    let server = tonic::transport::Server::builder().add_service(
        pb::peer_server::PeerServer::new(service)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
    );
    match tls {
        None => {
            tracing::debug!("peer service on {local} (no TLS)");
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        Some(tls) => {
            tracing::debug!("peer service on {local} (mutual TLS)");
            let incoming = tls_incoming(listener, tls);
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
    }
    Ok(())
}

/// How long a peer may take for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections after their TLS handshake. Each handshake runs on its own task, so
/// a slow or silent client holds up nobody; the acceptor is taken per connection, so a
/// reload applies to the next one.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    tls: Arc<PeerTls>,
) -> impl futures_util::Stream<
    Item = Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("peer port accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let _ = tcp.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::warn!("peer connection from {from} refused: {e}"),
                    Err(_) => tracing::warn!("peer connection from {from}: no TLS handshake"),
                }
            });
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
