//! One TCP connection: the HTTP request, then the WebSocket message loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{
    Error as WsError, Message as WsMessage, error::CapacityError,
};

use super::http::{self, RequestHead};
use super::tls::ChannelBinding;
use super::{Acceptor, Flow, Outgoing, SessionHandler, TransportConfig};
use crate::wamp::Protocol;

/// Messages taken from the outbox per write round; they share one flush.
const WRITE_BATCH: usize = 128;

/// A byte stream a connection runs over: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for S {}

pub async fn run<A: Acceptor, S: Stream>(
    mut stream: S,
    peer: SocketAddr,
    binding: ChannelBinding,
    acceptor: Arc<A>,
    config: &TransportConfig,
) -> anyhow::Result<()> {
    let head =
        match tokio::time::timeout(config.handshake_timeout, http::read_head(&mut stream)).await {
            Ok(head) => head?,
            Err(_) => anyhow::bail!("no request head within {:?}", config.handshake_timeout),
        };
    match head.path.as_str() {
        "/healthz" => return Ok(http::respond(&mut stream, "200 OK", "text/plain", "ok\n").await?),
        "/readyz" => {
            let (status, body) = if acceptor.ready() {
                ("200 OK", "ready\n")
            } else {
                ("503 Service Unavailable", "not ready\n")
            };
            return Ok(http::respond(&mut stream, status, "text/plain", body).await?);
        }
        "/metrics" => {
            return Ok(http::respond(
                &mut stream,
                "200 OK",
                crate::metrics::CONTENT_TYPE,
                &acceptor.metrics(),
            )
            .await?);
        }
        "/ws" => {}
        _ => {
            return Ok(
                http::respond(&mut stream, "404 Not Found", "text/plain", "not found\n").await?,
            );
        }
    }
    let RequestHead {
        upgrade_websocket,
        ws_key,
        protocols,
        rest,
        ..
    } = head;
    let (true, Some(key)) = (upgrade_websocket, ws_key) else {
        return Ok(http::respond(
            &mut stream,
            "426 Upgrade Required",
            "text/plain",
            "this is a WAMP WebSocket endpoint\n",
        )
        .await?);
    };
    let Some((protocol, name)) = Protocol::negotiate(protocols.iter().map(String::as_str)) else {
        let body = format!(
            "no supported WAMP subprotocol among {protocols:?}; supported: {:?}\n",
            crate::wamp::serializer::SUBPROTOCOLS
        );
        return Ok(http::respond(&mut stream, "400 Bad Request", "text/plain", &body).await?);
    };
    let name = name.to_owned();
    http::switch_protocols(&mut stream, &key, &name).await?;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config)).await;
    let (handler, rx, kill) = acceptor.open(peer, protocol, binding);
    session_loop(ws, protocol, handler, rx, kill, config).await
}

async fn session_loop<H: SessionHandler, S: Stream>(
    mut ws: WebSocketStream<S>,
    protocol: Protocol,
    mut handler: H,
    mut rx: super::Inbox,
    kill: Arc<tokio::sync::Notify>,
    config: &TransportConfig,
) -> anyhow::Result<()> {
    let hello_deadline = tokio::time::sleep(config.hello_timeout);
    tokio::pin!(hello_deadline);
    let mut ping_tick = tokio::time::interval(config.ping_interval);
    ping_tick.reset();
    let mut ping_sent: Option<Instant> = None;
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    break Ok(());
                }
                let bytes = batch.iter().map(Outgoing::size).sum();
                // A peer that stops reading blocks the write: the kill (its queue overflowed)
                // and a deadline must still end the connection.
                let stalled = config.ping_interval + config.ping_timeout;
                let close = tokio::select! {
                    written = tokio::time::timeout(stalled, write_batch(&mut ws, protocol, &mut batch)) => match written {
                        Ok(close) => close,
                        Err(_) => {
                            tracing::info!("a write did not complete within {stalled:?}: closing");
                            break Ok(());
                        }
                    },
                    _ = kill.notified() => {
                        break close_ws(&mut ws, CloseCode::Policy, "outbound queue over budget: slow consumer").await;
                    }
                };
                rx.done(bytes);
                match close {
                    Ok(true) => break close_ws(&mut ws, CloseCode::Normal, "").await,
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
            }
            frame = ws.next(), if !closing => {
                let data = match frame {
                    Some(Ok(WsMessage::Text(t))) if protocol.serializer.is_text() => t.as_bytes().to_vec(),
                    Some(Ok(WsMessage::Binary(b))) if !protocol.serializer.is_text() => b.to_vec(),
                    Some(Ok(WsMessage::Text(_) | WsMessage::Binary(_))) => {
                        if handler.on_garbage("frame type does not match the negotiated serializer".into()) == Flow::Close {
                            closing = true;
                            rx.close();
                        }
                        continue;
                    }
                    Some(Ok(WsMessage::Pong(_))) => { ping_sent = None; continue; }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Frame(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | None => break Ok(()),
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                        tracing::info!(size, max_size, "message too big: closing");
                        break close_ws(&mut ws, CloseCode::Size, "message too big").await;
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        tracing::info!("text frame is not UTF-8: closing");
                        break close_ws(&mut ws, CloseCode::Invalid, "text frame is not valid UTF-8").await;
                    }
                    Some(Err(e)) => break Err(e.into()),
                };
                match protocol.decode_frame(&data) {
                    Ok(msgs) => {
                        for msg in msgs {
                            if handler.on_message(msg).await == Flow::Close {
                                closing = true;
                                break;
                            }
                        }
                    }
                    Err(e) => closing = handler.on_garbage(e.to_string()) == Flow::Close,
                }
                if closing {
                    // The handler has queued its last words (ABORT or GOODBYE); write them and close.
                    rx.close();
                }
            }
            _ = ping_tick.tick() => {
                if let Some(sent) = ping_sent && sent.elapsed() >= config.ping_timeout {
                    tracing::info!("no pong within {:?}: closing", config.ping_timeout);
                    break close_ws(&mut ws, CloseCode::Away, "ping timeout").await;
                }
                if ping_sent.is_none() {
                    ping_sent = Some(Instant::now());
                    if let Err(e) = ws.send(WsMessage::Ping(Default::default())).await {
                        break Err(e.into());
                    }
                }
            }
            _ = &mut hello_deadline, if !handler.is_established() && !closing => {
                tracing::info!("no session established within {:?}: closing", config.hello_timeout);
                break close_ws(&mut ws, CloseCode::Policy, "no HELLO in time").await;
            }
            _ = kill.notified() => {
                // Its queue overflowed: it does not read as fast as it is sent to.
                break close_ws(&mut ws, CloseCode::Policy, "outbound queue over budget: slow consumer").await;
            }
        }
    };
    handler.on_close();
    result
}

/// Writes queued messages; batched protocols pack them into one frame. True when asked to close.
async fn write_batch<S: Stream>(
    ws: &mut WebSocketStream<S>,
    protocol: Protocol,
    batch: &mut Vec<Outgoing>,
) -> anyhow::Result<bool> {
    let mut close = false;
    let mut frame = Vec::new();
    for item in batch.drain(..) {
        match item {
            Outgoing::Message(out) => {
                let bytes = out.encoded(protocol.serializer)?;
                if protocol.batched {
                    protocol.frame_encoded(bytes, &mut frame)?;
                } else {
                    ws.feed(to_ws(protocol, bytes.clone())).await?;
                }
            }
            Outgoing::Close => {
                close = true;
                break;
            }
        }
    }
    if !frame.is_empty() {
        ws.feed(to_ws(protocol, frame.into())).await?;
    }
    ws.flush().await?;
    Ok(close)
}

fn to_ws(protocol: Protocol, bytes: bytes::Bytes) -> WsMessage {
    if protocol.serializer.is_text() {
        // serde_json writes UTF-8.
        WsMessage::Text(
            tokio_tungstenite::tungstenite::Utf8Bytes::try_from(bytes)
                .expect("serde_json writes UTF-8"),
        )
    } else {
        WsMessage::Binary(bytes)
    }
}

async fn close_ws<S: Stream>(
    ws: &mut WebSocketStream<S>,
    code: CloseCode,
    reason: &str,
) -> anyhow::Result<()> {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    // The peer may be gone already; a failed close is not an error of ours.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ws.close(Some(frame))).await;
    Ok(())
}
