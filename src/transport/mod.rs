//! WebSocket listener, subprotocol negotiation, pings, size limits, and plain HTTP health routes.

mod connection;
mod http;
mod outbox;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::wamp::{Message, Protocol};

pub use outbox::{Budget, Inbox, Outbox, SendError, outbox, queued_total};

/// A message on its way out. One EVENT may go to many subscribers: its encoding per serializer
/// is made once, by whichever connection writes it first, and shared by the others.
#[derive(Debug)]
pub struct Outbound {
    pub message: Message,
    /// Roughly its encoded size, counted against byte budgets once per queue it enters.
    pub size: usize,
    encoded: [std::sync::OnceLock<bytes::Bytes>; 3],
}

impl Outbound {
    pub fn new(message: Message) -> Arc<Outbound> {
        Arc::new(Outbound {
            size: message.approx_size(),
            message,
            encoded: Default::default(),
        })
    }

    /// The message alone (no batch framing) in `serializer`.
    pub fn encoded(
        &self,
        serializer: crate::wamp::Serializer,
    ) -> Result<&bytes::Bytes, crate::wamp::CodecError> {
        let slot = &self.encoded[serializer as usize];
        if let Some(b) = slot.get() {
            return Ok(b);
        }
        let bytes = bytes::Bytes::from(serializer.encode(&self.message)?);
        Ok(slot.get_or_init(|| bytes))
    }
}

/// What the session layer hands a connection to write.
#[derive(Debug)]
pub enum Outgoing {
    Message(Arc<Outbound>),
    /// Flush what came before, then close the connection.
    Close,
}

impl Outgoing {
    /// What it counts against a byte budget.
    pub fn size(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.size,
            Outgoing::Close => 0,
        }
    }
}

/// Whether a connection goes on after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write what is queued, then close.
    Close,
}

/// The session layer's side of one connection.
pub trait SessionHandler: Send + 'static {
    fn on_message(&mut self, msg: Message) -> impl Future<Output = Flow> + Send;
    /// A frame that is not a valid WAMP message.
    fn on_garbage(&mut self, why: String) -> Flow;
    /// Until a session is established, the HELLO deadline applies.
    fn is_established(&self) -> bool;
    fn on_close(&mut self);
}

/// Opens a session for each accepted WebSocket connection.
pub trait Acceptor: Send + Sync + 'static {
    type Handler: SessionHandler;
    fn open(
        &self,
        peer: SocketAddr,
        protocol: Protocol,
        binding: tls::ChannelBinding,
    ) -> (Self::Handler, Inbox, Arc<Notify>);
    /// `/readyz` answers 200 only when this is true.
    fn ready(&self) -> bool;
    /// The `/metrics` page, in the OpenMetrics text format (`crate::metrics`).
    fn metrics(&self) -> String;
}

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub max_message_size: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Time from TCP accept to a complete HTTP request head.
    pub handshake_timeout: Duration,
    /// Time from the WebSocket upgrade to an established session.
    pub hello_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_message_size: 1024 * 1024,
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_millis(2500),
            hello_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts connections until the listener fails; each connection runs in its own task,
/// behind a TLS handshake when `tls` is given.
pub async fn serve<A: Acceptor>(
    listener: TcpListener,
    acceptor: Arc<A>,
    config: TransportConfig,
    tls: Option<Arc<tls::ListenerTls>>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            // Running out of file descriptors must not end the server; back off and go on.
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let config = config.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => connection::run(stream, peer, Default::default(), acceptor, &config).await,
                Some(tls) => {
                    // The handshake counts against the time allowed for the request head.
                    match tokio::time::timeout(config.handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok((stream, binding))) => {
                            connection::run(stream, peer, binding, acceptor, &config).await
                        }
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err(anyhow::anyhow!(
                            "no TLS handshake within {:?}",
                            config.handshake_timeout
                        )),
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
