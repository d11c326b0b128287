//! A realm: its roles, its joined sessions, and the dealer and broker that serve them.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::metrics::{self, RealmMeters};
use crate::wamp::{Dict, Id, Message, Payload, Value, message::code};

use super::broker::Broker;
use super::dealer::Dealer;
use super::role::{Action, Permission, Role};
use super::session_info::{Member, Outbound, Outbox, Outgoing, SessionInfo};

/// A client message the router refuses to act on; the session is aborted with this text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolViolation(pub String);

pub struct Realm {
    pub name: String,
    roles: HashMap<String, Arc<Role>>,
    internal_roles: Vec<String>,
    state: Mutex<State>,
    me: Weak<Realm>,
}

/// Where publications of a realm also go: the realm's name and the router's relay.
pub(crate) struct RelayTo {
    pub realm: String,
    pub relay: super::SharedRelay,
}

pub(crate) struct State {
    pub members: HashMap<Id, Member>,
    pub dealer: Dealer,
    pub broker: Broker,
    pub default_call_timeout_ms: Option<u64>,
    pub retarget: Option<Arc<dyn CallRetarget>>,
    pub relay: RelayTo,
    pub meters: RealmMeters,
}

/// Serves some CALLs by another procedure directly: the dealer invokes the target's callee
/// as if the caller had called it, so its answer goes straight back to the caller. A
/// management realm uses it for `remote.*` → the node's own procedure, which saves the
/// backend's round trip through the dealer. Anything it does not answer (unknown node,
/// caller not allowed, node elsewhere) goes to the registered callee as usual.
pub trait CallRetarget: Send + Sync {
    /// Only procedures under this prefix are offered.
    fn prefix(&self) -> &str;
    /// The procedure and payload to invoke instead, or `None` for the usual callee. Runs
    /// under the realm's lock: must not block.
    fn retarget(
        &self,
        procedure: &str,
        caller_authrole: &str,
        payload: &Payload,
    ) -> Option<(String, Payload)>;
}

pub(crate) fn error_reply(request_type: u64, request: Id, uri: &str, message: String) -> Message {
    Message::Error {
        request_type,
        request,
        details: Dict::new(),
        error: uri.to_owned(),
        payload: Payload::args(vec![Value::Str(message)]),
    }
}

impl State {
    /// Sends `msg` to member `to`; answers to CALLs are counted here, the one place every
    /// one of them passes (a progressive result is not an answer).
    pub fn reply(&self, to: Id, msg: Message) {
        match &msg {
            Message::Result { details, .. } if !details.contains_key("progress") => {
                self.meters.call_ok()
            }
            Message::Error {
                request_type: code::CALL,
                error,
                ..
            } => self.meters.call_failed(error),
            _ => {}
        }
        if let Some(m) = self.members.get(&to) {
            m.send(msg);
        }
    }

    pub fn rule(&self, sid: Id, uri: &str, action: Action) -> Option<Permission> {
        let m = self.members.get(&sid)?;
        m.role
            .authorize_session(uri, action, &m.info.authid)
            .cloned()
    }

    pub fn authorized(&self, sid: Id, uri: &str, action: Action) -> bool {
        self.members.get(&sid).is_some_and(|m| {
            m.role
                .authorize_session(uri, action, &m.info.authid)
                .is_some()
        })
    }

    /// A fresh id for a registration or subscription, unique in this realm.
    pub fn new_id(&self) -> Id {
        loop {
            let id = crate::wamp::random_id();
            if !self.dealer.regs.contains_key(&id) && !self.broker.subs.contains_key(&id) {
                return id;
            }
        }
    }

    /// Removes a session with everything it owns; returns its member record.
    fn remove_member(&mut self, sid: Id) -> Option<Member> {
        let member = self.members.remove(&sid)?;
        self.dealer_detach(sid);
        self.broker_detach(sid);
        let info = &member.info;
        self.publish_meta(
            "wamp.session.on_leave",
            vec![
                sid.into(),
                info.authid.as_str().into(),
                info.authrole.as_str().into(),
            ],
        );
        Some(member)
    }

    /// Ends another session: GOODBYE with the reason, then the connection closes.
    pub fn kill(&mut self, sid: Id, reason: &str, message: &str) -> bool {
        let Some(member) = self.remove_member(sid) else {
            return false;
        };
        let goodbye = Message::Goodbye {
            details: crate::dict! {"message" => message},
            reason: reason.to_owned(),
        };
        if member
            .tx
            .try_send(Outgoing::Message(Outbound::new(goodbye)))
            .is_err()
            || member.tx.try_send(Outgoing::Close).is_err()
        {
            member.kill.notify_one();
        }
        true
    }
}

impl Realm {
    pub fn new(
        name: String,
        roles: Vec<Role>,
        internal_roles: Vec<String>,
        default_call_timeout_ms: Option<u64>,
        relay: super::SharedRelay,
    ) -> Arc<Realm> {
        let relay = RelayTo {
            realm: name.clone(),
            relay,
        };
        let meters = metrics::meters().for_realm(&metrics::meters().realm_label(&name));
        Arc::new_cyclic(|me| Realm {
            name,
            roles: roles
                .into_iter()
                .map(|r| (r.name.clone(), Arc::new(r)))
                .collect(),
            internal_roles,
            state: Mutex::new(State {
                members: HashMap::new(),
                dealer: Dealer::default(),
                broker: Broker::default(),
                default_call_timeout_ms,
                retarget: None,
                relay,
                meters,
            }),
            me: me.clone(),
        })
    }

    pub fn role(&self, name: &str) -> Option<Arc<Role>> {
        self.roles.get(name).cloned()
    }

    /// A role a client may be welcomed with: one of the realm's, and not an internal one.
    pub fn client_role(&self, name: &str) -> Option<Arc<Role>> {
        if self.internal_roles.iter().any(|r| r == name) {
            return None;
        }
        self.role(name)
    }

    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock())
    }

    /// Adds a welcomed session whose actions `role` governs, holding at most `limits`.
    pub fn attach(
        &self,
        info: SessionInfo,
        role: Arc<Role>,
        limits: Option<super::SessionLimits>,
        tx: Outbox,
        kill: Arc<tokio::sync::Notify>,
    ) {
        let info = Arc::new(info);
        let details = info.to_details();
        let mut st = self.state.lock();
        st.members.insert(
            info.id,
            Member {
                info,
                role,
                tx,
                kill,
                limits,
                usage: Default::default(),
            },
        );
        st.publish_meta("wamp.session.on_join", vec![Value::Dict(details)]);
    }

    /// Installs (or with `None` removes) the realm's call retargeting.
    pub fn set_call_retarget(&self, retarget: Option<Arc<dyn CallRetarget>>) {
        self.state.lock().retarget = retarget;
    }

    /// Publishes an event of the master itself (management events): no publisher.
    pub fn publish_internal(&self, topic: &str, args: Vec<Value>) {
        self.state.lock().publish_meta(topic, args);
    }

    /// As `publish_internal`, with keyword arguments.
    pub fn publish_internal_payload(&self, topic: &str, payload: Payload) {
        let mut st = self.state.lock();
        if st.broker.subs.is_empty() {
            return;
        }
        st.publish_meta_payload(topic, payload);
    }

    /// As `publish_internal_payload`, delivered only to the sessions `options` admit.
    pub fn publish_internal_with(&self, topic: &str, payload: Payload, options: &Dict) {
        self.state.lock().publish_meta_with(topic, payload, options);
    }

    /// A management event that happens once in the cluster (an object created, a trace
    /// started): delivered here and relayed to the other replicas' subscribers.
    pub fn publish_cluster(&self, topic: &str, payload: Payload, options: &Dict) {
        let mut st = self.state.lock();
        st.relay_out(topic, options, &Dict::new(), &payload);
        st.publish_meta_with(topic, payload, options);
    }

    /// A publication relayed from another replica: delivered here only.
    pub fn publish_relayed(&self, topic: &str, options: &Dict, details: Dict, payload: Payload) {
        self.state
            .lock()
            .deliver_relayed(topic, options, details, payload);
    }

    /// Removes a session that left; a session already killed is not there anymore.
    /// Whether session `sid` is still joined (the router may have closed it meanwhile).
    pub fn is_member(&self, sid: Id) -> bool {
        self.state.lock().members.contains_key(&sid)
    }

    pub fn detach(&self, sid: Id) {
        self.state.lock().remove_member(sid);
    }

    /// Client sessions (the master's own internal sessions are not counted).
    pub fn session_count(&self) -> usize {
        self.state
            .lock()
            .members
            .values()
            .filter(|m| m.info.protocol != super::internal::PROTOCOL)
            .count()
    }

    /// This realm's label in the metrics, and its client sessions by authrole.
    pub fn sessions_by_role(&self) -> (String, HashMap<String, usize>) {
        let st = self.state.lock();
        let mut by_role: HashMap<String, usize> = HashMap::new();
        for m in st.members.values() {
            if m.info.protocol != super::internal::PROTOCOL {
                *by_role.entry(m.info.authrole.clone()).or_default() += 1;
            }
        }
        (st.meters.label().to_owned(), by_role)
    }

    /// Says GOODBYE to every session (used on shutdown).
    pub fn close_all(&self, reason: &str, message: &str) -> usize {
        let mut st = self.state.lock();
        let ids: Vec<Id> = st.members.keys().copied().collect();
        ids.into_iter()
            .filter(|id| st.kill(*id, reason, message))
            .count()
    }

    /// `(session id, authrole)` of every client session (not the master's own), for a drain.
    pub fn client_members(&self) -> Vec<(Id, String)> {
        self.state
            .lock()
            .members
            .values()
            .filter(|m| m.info.protocol != super::internal::PROTOCOL)
            .map(|m| (m.info.id, m.info.authrole.clone()))
            .collect()
    }

    /// `(authid, authrole)` of every session, for reconciling them with the state.
    pub fn members(&self) -> Vec<(String, String)> {
        self.state
            .lock()
            .members
            .values()
            .map(|m| (m.info.authid.clone(), m.info.authrole.clone()))
            .collect()
    }

    /// Closes one session (a node replaced by a newer session of itself).
    pub fn kill_session(&self, sid: Id, reason: &str, message: &str) -> bool {
        self.state.lock().kill(sid, reason, message)
    }

    /// Closes every session whose authid matches (used by the management API).
    /// The sessions joined under `authid`.
    pub fn sessions_of(&self, authid: &str) -> Vec<Id> {
        let st = self.state.lock();
        st.members
            .values()
            .filter(|m| m.info.authid == authid)
            .map(|m| m.info.id)
            .collect()
    }

    pub fn kill_by_authid(&self, authid: &str, reason: &str, message: &str) -> Vec<Id> {
        let mut st = self.state.lock();
        let ids: Vec<Id> = st
            .members
            .values()
            .filter(|m| m.info.authid == authid)
            .map(|m| m.info.id)
            .collect();
        ids.into_iter()
            .filter(|id| st.kill(*id, reason, message))
            .collect()
    }

    /// Closes the client sessions of `authid` joined as `authrole`; internal sessions stay.
    pub fn kill_by_authid_role(
        &self,
        authid: &str,
        authrole: &str,
        reason: &str,
        message: &str,
    ) -> Vec<Id> {
        let mut st = self.state.lock();
        let ids: Vec<Id> = st
            .members
            .values()
            .filter(|m| {
                m.info.authid == authid
                    && m.info.authrole == authrole
                    && m.info.protocol != super::internal::PROTOCOL
            })
            .map(|m| m.info.id)
            .collect();
        ids.into_iter()
            .filter(|id| st.kill(*id, reason, message))
            .collect()
    }

    /// Acts on a message from an established session.
    pub fn handle(&self, sid: Id, msg: Message) -> Result<(), ProtocolViolation> {
        let mut st = self.state.lock();
        match msg {
            Message::Call {
                request,
                options,
                procedure,
                payload,
            } => st.call(&self.me, sid, request, options, procedure, payload),
            Message::Yield {
                request,
                options,
                payload,
            } => st.yield_(sid, request, options, payload),
            Message::Error {
                request_type: code::INVOCATION,
                request,
                details,
                error,
                payload,
            } => st.invocation_error(sid, request, details, error, payload),
            Message::Cancel { request, options } => st.cancel(sid, request, options),
            Message::Register {
                request,
                options,
                procedure,
            } => st.register(sid, request, options, procedure),
            Message::Unregister {
                request,
                registration,
            } => st.unregister(sid, request, registration),
            Message::Publish {
                request,
                options,
                topic,
                payload,
            } => st.publish(sid, request, options, topic, payload),
            Message::Subscribe {
                request,
                options,
                topic,
            } => st.subscribe(sid, request, options, topic),
            Message::Unsubscribe {
                request,
                subscription,
            } => st.unsubscribe(sid, request, subscription),
            Message::EventReceived { .. } => {}
            other => {
                return Err(ProtocolViolation(format!(
                    "unexpected {} message in an established session",
                    other.name()
                )));
            }
        }
        Ok(())
    }
}
