//! A small, fast WAMP client: cryptosign or anonymous, any serializer. Used by the load
//! generator and by tests; it points at any WAMP router, ours or the reference master.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message as WsMessage, http::HeaderValue};

use crate::wamp::cryptosign;
use crate::wamp::{Dict, Id, Message, Payload, Protocol, Value, message::code};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("session refused: {reason} ({message})")]
    Aborted { reason: String, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection closed")]
    Closed,
    #[error("{error}: {args:?}")]
    Wamp { error: String, args: Vec<Value> },
}

#[derive(Clone)]
pub struct ClientConfig {
    pub url: String,
    pub realm: Option<String>,
    pub protocol: Protocol,
    pub authid: Option<String>,
    pub authrole: Option<String>,
    /// Cryptosign with this key; anonymous without.
    pub key: Option<SigningKey>,
}

/// Answers an invocation: `Ok(payload)` yields it, `Err((uri, args))` returns an error.
pub type Handler = Arc<dyn Fn(Payload) -> Result<Payload, (String, Vec<Value>)> + Send + Sync>;
/// Receives events of a subscription.
pub type EventHandler = Arc<dyn Fn(Dict, Payload) + Send + Sync>;

#[derive(Default)]
struct Shared {
    /// Waiting requests; `None` once the connection is gone, so late requests fail at once
    /// instead of waiting for an answer that cannot come.
    replies: Mutex<Option<HashMap<Id, oneshot::Sender<Message>>>>,
    procedures: Mutex<HashMap<Id, Handler>>,
    subscriptions: Mutex<HashMap<Id, EventHandler>>,
    /// The router's GOODBYE or ABORT reason, once it closed the session.
    close_reason: Mutex<Option<String>>,
}

#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Message>,
    shared: Arc<Shared>,
    next_request: Arc<AtomicU64>,
    pub session_id: Id,
    pub welcome: Dict,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn recv(ws: &mut Ws, protocol: Protocol) -> Result<Message, ClientError> {
    loop {
        let data = match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(WsMessage::Binary(b))) => b.to_vec(),
            Some(Ok(WsMessage::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => continue,
            Some(Err(_)) => return Err(ClientError::Closed),
        };
        let mut msgs = protocol
            .decode_frame(&data)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if msgs.len() != 1 {
            return Err(ClientError::Protocol(
                "expected one message during the handshake".into(),
            ));
        }
        return Ok(msgs.remove(0));
    }
}

fn frame(protocol: Protocol, msg: &Message) -> WsMessage {
    let mut bytes = Vec::new();
    protocol
        .encode_into_frame(msg, &mut bytes)
        .expect("client messages encode");
    if protocol.serializer.is_text() {
        WsMessage::Text(String::from_utf8(bytes).expect("JSON is UTF-8").into())
    } else {
        WsMessage::Binary(bytes.into())
    }
}

fn client_roles() -> Dict {
    let f = |names: &[&str]| {
        let mut d = Dict::new();
        for n in names {
            d.insert((*n).into(), Value::Bool(true));
        }
        Value::Dict(crate::dict! {"features" => Value::Dict(d)})
    };
    let mut roles = Dict::new();
    roles.insert(
        "caller".into(),
        f(&["progressive_call_results", "call_canceling", "call_timeout"]),
    );
    roles.insert(
        "callee".into(),
        f(&[
            "progressive_call_results",
            "call_canceling",
            "caller_identification",
        ]),
    );
    roles.insert(
        "publisher".into(),
        f(&["publisher_exclusion", "publisher_identification"]),
    );
    roles.insert(
        "subscriber".into(),
        f(&["pattern_based_subscription", "publisher_identification"]),
    );
    roles
}

impl Client {
    pub async fn connect(cfg: &ClientConfig) -> Result<Client, ClientError> {
        let connect_err = |e| ClientError::Connect {
            url: cfg.url.clone(),
            source: Box::new(e),
        };
        let mut request = cfg
            .url
            .as_str()
            .into_client_request()
            .map_err(connect_err)?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&cfg.protocol.to_string()).expect("ascii"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(connect_err)?;
        let mut details = crate::dict! {"roles" => Value::Dict(client_roles())};
        if let Some(a) = &cfg.authid {
            details.insert("authid".into(), a.as_str().into());
        }
        if let Some(r) = &cfg.authrole {
            details.insert("authrole".into(), r.as_str().into());
        }
        match &cfg.key {
            Some(k) => {
                details.insert("authmethods".into(), Value::List(vec!["cryptosign".into()]));
                let pubkey = hex::encode(k.verifying_key().as_bytes());
                details.insert(
                    "authextra".into(),
                    Value::Dict(crate::dict! {"pubkey" => pubkey}),
                );
            }
            None => {
                details.insert("authmethods".into(), Value::List(vec!["anonymous".into()]));
            }
        }
        let p = cfg.protocol;
        ws.send(frame(
            p,
            &Message::Hello {
                realm: cfg.realm.clone(),
                details,
            },
        ))
        .await
        .map_err(|_| ClientError::Closed)?;
        let welcome = loop {
            match recv(&mut ws, p).await? {
                Message::Challenge { extra, .. } => {
                    let challenge = extra
                        .get("challenge")
                        .and_then(Value::as_str)
                        .and_then(|c| hex::decode(c).ok())
                        .ok_or_else(|| {
                            ClientError::Protocol("CHALLENGE without a hex challenge".into())
                        })?;
                    let key = cfg
                        .key
                        .as_ref()
                        .ok_or_else(|| ClientError::Protocol("challenged without a key".into()))?;
                    let signature = cryptosign::sign(key, &challenge);
                    ws.send(frame(
                        p,
                        &Message::Authenticate {
                            signature,
                            extra: Dict::new(),
                        },
                    ))
                    .await
                    .map_err(|_| ClientError::Closed)?;
                }
                Message::Welcome { session, details } => break (session, details),
                Message::Abort { details, reason } => {
                    let message = details
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    return Err(ClientError::Aborted { reason, message });
                }
                other => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected {} during the handshake",
                        other.name()
                    )));
                }
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            replies: Mutex::new(Some(HashMap::new())),
            ..Default::default()
        });
        let (sink, stream) = ws.split();
        tokio::spawn(write_loop(sink, rx, p));
        tokio::spawn(read_loop(stream, p, shared.clone(), tx.clone()));
        Ok(Client {
            tx,
            shared,
            next_request: Arc::new(AtomicU64::new(1)),
            session_id: welcome.0,
            welcome: welcome.1,
        })
    }

    fn request(&self) -> (Id, oneshot::Receiver<Message>) {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Some(waiting) = self.shared.replies.lock().as_mut() {
            waiting.insert(id, tx);
        } // else `tx` drops here and the caller sees `Closed`.
        (id, rx)
    }

    async fn exchange(
        &self,
        rx: oneshot::Receiver<Message>,
        msg: Message,
    ) -> Result<Message, ClientError> {
        self.tx.send(msg).map_err(|_| ClientError::Closed)?;
        match rx.await.map_err(|_| ClientError::Closed)? {
            Message::Error { error, payload, .. } => Err(ClientError::Wamp {
                error,
                args: payload.arg_list().to_vec(),
            }),
            m => Ok(m),
        }
    }

    pub async fn call(
        &self,
        procedure: &str,
        payload: Payload,
        options: Dict,
    ) -> Result<Payload, ClientError> {
        let (request, rx) = self.request();
        match self
            .exchange(
                rx,
                Message::Call {
                    request,
                    options,
                    procedure: procedure.into(),
                    payload,
                },
            )
            .await?
        {
            Message::Result { payload, .. } => Ok(payload),
            other => Err(ClientError::Protocol(format!(
                "unexpected {}",
                other.name()
            ))),
        }
    }

    pub async fn register(
        &self,
        procedure: &str,
        options: Dict,
        handler: Handler,
    ) -> Result<Id, ClientError> {
        let (request, rx) = self.request();
        match self
            .exchange(
                rx,
                Message::Register {
                    request,
                    options,
                    procedure: procedure.into(),
                },
            )
            .await?
        {
            Message::Registered { registration, .. } => {
                self.shared.procedures.lock().insert(registration, handler);
                Ok(registration)
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected {}",
                other.name()
            ))),
        }
    }

    pub async fn subscribe(
        &self,
        topic: &str,
        options: Dict,
        handler: EventHandler,
    ) -> Result<Id, ClientError> {
        let (request, rx) = self.request();
        match self
            .exchange(
                rx,
                Message::Subscribe {
                    request,
                    options,
                    topic: topic.into(),
                },
            )
            .await?
        {
            Message::Subscribed { subscription, .. } => {
                self.shared
                    .subscriptions
                    .lock()
                    .insert(subscription, handler);
                Ok(subscription)
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected {}",
                other.name()
            ))),
        }
    }

    /// Publishes; with `acknowledge` waits for PUBLISHED and returns the publication id.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Payload,
        mut options: Dict,
        acknowledge: bool,
    ) -> Result<Option<Id>, ClientError> {
        if !acknowledge {
            let request = self.next_request.fetch_add(1, Ordering::Relaxed);
            self.tx
                .send(Message::Publish {
                    request,
                    options,
                    topic: topic.into(),
                    payload,
                })
                .map_err(|_| ClientError::Closed)?;
            return Ok(None);
        }
        options.insert("acknowledge".into(), Value::Bool(true));
        let (request, rx) = self.request();
        match self
            .exchange(
                rx,
                Message::Publish {
                    request,
                    options,
                    topic: topic.into(),
                    payload,
                },
            )
            .await?
        {
            Message::Published { publication, .. } => Ok(Some(publication)),
            other => Err(ClientError::Protocol(format!(
                "unexpected {}",
                other.name()
            ))),
        }
    }

    /// Why the router closed this session (GOODBYE or ABORT reason), if it did.
    pub fn close_reason(&self) -> Option<String> {
        self.shared.close_reason.lock().clone()
    }

    /// Whether the connection is gone (closed by either side, or lost): nothing more will be
    /// answered on this session.
    pub fn is_closed(&self) -> bool {
        self.shared.replies.lock().is_none()
    }

    /// Sends a raw message (tests use this to provoke protocol errors).
    pub fn send_raw(&self, msg: Message) -> Result<(), ClientError> {
        self.tx.send(msg).map_err(|_| ClientError::Closed)
    }

    pub fn close(&self) {
        let _ = self.tx.send(Message::Goodbye {
            details: Dict::new(),
            reason: crate::wamp::errors::CLOSE_NORMAL.into(),
        });
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, WsMessage>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    p: Protocol,
) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut buf = Vec::new();
        for m in batch.drain(..) {
            p.encode_into_frame(&m, &mut buf)
                .expect("client messages encode");
            if !p.batched
                && sink
                    .feed(bytes_frame(p, std::mem::take(&mut buf)))
                    .await
                    .is_err()
            {
                return;
            }
        }
        if !buf.is_empty() && sink.feed(bytes_frame(p, buf)).await.is_err() {
            return;
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

fn bytes_frame(p: Protocol, bytes: Vec<u8>) -> WsMessage {
    if p.serializer.is_text() {
        WsMessage::Text(String::from_utf8(bytes).expect("JSON is UTF-8").into())
    } else {
        WsMessage::Binary(bytes.into())
    }
}

async fn read_loop(
    mut stream: futures_util::stream::SplitStream<Ws>,
    p: Protocol,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Message>,
) {
    'frames: while let Some(Ok(frame)) = stream.next().await {
        let data = match frame {
            WsMessage::Text(t) => t.as_bytes().to_vec(),
            WsMessage::Binary(b) => b.to_vec(),
            WsMessage::Close(_) => break,
            _ => continue,
        };
        let Ok(msgs) = p.decode_frame(&data) else {
            break;
        };
        for msg in msgs {
            match msg {
                Message::Invocation {
                    request,
                    registration,
                    payload,
                    ..
                } => {
                    let handler = shared.procedures.lock().get(&registration).cloned();
                    let reply = match handler.map(|h| h(payload)) {
                        Some(Ok(payload)) => Message::Yield {
                            request,
                            options: Dict::new(),
                            payload,
                        },
                        Some(Err((error, args))) => Message::Error {
                            request_type: code::INVOCATION,
                            request,
                            details: Dict::new(),
                            error,
                            payload: Payload::args(args),
                        },
                        None => continue,
                    };
                    let _ = tx.send(reply);
                }
                Message::Event {
                    subscription,
                    details,
                    payload,
                    ..
                } => {
                    let handler = shared.subscriptions.lock().get(&subscription).cloned();
                    if let Some(h) = handler {
                        h(details, payload);
                    }
                }
                // Progressive results are not collected by this client; the final RESULT answers.
                Message::Result { ref details, .. }
                    if details.get("progress").and_then(Value::as_bool) == Some(true) => {}
                Message::Result { request, .. }
                | Message::Error { request, .. }
                | Message::Registered { request, .. }
                | Message::Subscribed { request, .. }
                | Message::Published { request, .. }
                | Message::Unregistered { request, .. }
                | Message::Unsubscribed { request, .. } => {
                    if let Some(reply) = shared
                        .replies
                        .lock()
                        .as_mut()
                        .and_then(|w| w.remove(&request))
                    {
                        let _ = reply.send(msg);
                    }
                }
                Message::Goodbye { reason, .. } | Message::Abort { reason, .. } => {
                    *shared.close_reason.lock() = Some(reason);
                    let _ = tx.send(Message::Goodbye {
                        details: Dict::new(),
                        reason: crate::wamp::errors::CLOSE_GOODBYE_AND_OUT.into(),
                    });
                    // The session is over: nothing after the router's GOODBYE counts (and
                    // its reason must not be overwritten by a late message).
                    break 'frames;
                }
                _ => {}
            }
        }
    }
    // Wake every waiter: their requests will not be answered.
    *shared.replies.lock() = None;
}
