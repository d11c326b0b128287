//! What the router knows about a joined session, and how it reaches its connection.

use std::sync::Arc;

use tokio::sync::Notify;

pub use crate::transport::{Outbound, Outbox, Outgoing};
use crate::wamp::{Dict, Id, Message, Value};

#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub id: Id,
    pub realm: String,
    pub authid: String,
    pub authrole: String,
    pub authmethod: String,
    pub authprovider: String,
    pub authextra: Dict,
    /// e.g. `tcp4:127.0.0.1:51000`
    pub peer: String,
    /// e.g. `wamp.2.cbor.batched`
    pub protocol: String,
    pub callee_call_canceling: bool,
    pub callee_progressive_results: bool,
    pub joined: String,
}

impl SessionInfo {
    /// The session as the meta API and `on_join` describe it.
    pub fn to_details(&self) -> Dict {
        let transport = crate::dict! {
            "type" => "websocket",
            "peer" => self.peer.as_str(),
            "protocol" => self.protocol.as_str(),
        };
        crate::dict! {
            "session" => self.id,
            "realm" => self.realm.as_str(),
            "authid" => self.authid.as_str(),
            "authrole" => self.authrole.as_str(),
            "authmethod" => self.authmethod.as_str(),
            "authprovider" => self.authprovider.as_str(),
            "authextra" => Value::Dict(self.authextra.clone()),
            "transport" => Value::Dict(transport),
            "joined" => self.joined.as_str(),
        }
    }
}

/// A joined session's handle inside its realm.
pub(crate) struct Member {
    pub info: Arc<SessionInfo>,
    pub role: Arc<crate::router::role::Role>,
    pub tx: Outbox,
    /// Tells the connection to drop at once (used when its outbox overflows).
    pub kill: Arc<Notify>,
    /// None for the master's own sessions.
    pub limits: Option<super::limits::SessionLimits>,
    pub usage: super::limits::Usage,
}

impl Member {
    pub fn send(&self, msg: Message) {
        self.send_arc(Outbound::new(msg));
    }

    pub fn send_arc(&self, msg: Arc<Outbound>) {
        match self.tx.try_send(Outgoing::Message(msg)) {
            Ok(()) => {}
            // Gone already: its connection task cleans up.
            Err(crate::transport::SendError::Closed) => {}
            Err(e) => {
                tracing::warn!(session = self.info.id, authid = %self.info.authid, "dropping slow session: {e}");
                self.kill.notify_one();
                crate::metrics::meters().count_slow_session_dropped();
            }
        }
    }
}
