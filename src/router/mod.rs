//! Realms, sessions, the dealer and the broker, role permissions and the meta API.

pub mod authenticator;
mod broker;
pub use broker::AUDIENCE_OPTIONS;
mod dealer;
pub mod internal;
mod leave;
mod limits;
mod meta;
pub mod realm;
mod realm_budget;
pub mod role;
mod session;
pub mod session_info;
#[cfg(test)]
mod tests;
mod uri_index;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::wamp::{Dict, Id, Payload};
use authenticator::Authenticator;
pub use limits::SessionLimits;
pub use realm::Realm;
pub use role::{AUTHID_PLACEHOLDER, Action, Permission, Role};
pub use session::Session;

/// A realm to create at start-up.
#[derive(Clone, Debug)]
pub struct RealmSpec {
    pub name: String,
    pub roles: Vec<Role>,
    /// Roles only the master's internal sessions hold: a client is never welcomed with one.
    pub internal_roles: Vec<String>,
}

pub struct RouterOptions {
    /// Shown to clients in WELCOME `authextra.x_cb_node`.
    pub node_name: String,
    /// Messages queued for one session before it counts as too slow and is dropped.
    /// What may wait for one session, and for all of them (messages, bytes).
    pub outbound: crate::transport::Budget,
    /// Applied to calls that do not set their own timeout.
    pub default_call_timeout_ms: Option<u64>,
    /// What one client session may hold at once.
    pub session_limits: SessionLimits,
}

pub struct Router {
    realms: RwLock<HashMap<String, Arc<Realm>>>,
    authenticator: Arc<dyn Authenticator>,
    options: RouterOptions,
    relay: SharedRelay,
}

/// Carries publications to the router's peers (the other replicas), so their subscribers get
/// them too. Gets what a local delivery used: the PUBLISH options (of which only
/// `AUDIENCE_OPTIONS` matter elsewhere) and the details every event carries (publisher
/// disclosure). Called on every publication, under the realm's lock: must not block.
pub trait PublicationRelay: Send + Sync {
    fn relay(&self, realm: &str, topic: &str, options: &Dict, details: &Dict, payload: &Payload);
}

/// The relay every realm of a router hands its publications to; none for a router that
/// has no peers (tests, tools).
pub type SharedRelay = Option<Arc<dyn PublicationRelay>>;

impl Router {
    pub fn new(
        authenticator: Arc<dyn Authenticator>,
        options: RouterOptions,
        relay: SharedRelay,
    ) -> Arc<Router> {
        Arc::new(Router {
            realms: RwLock::new(HashMap::new()),
            authenticator,
            options,
            relay,
        })
    }

    pub fn add_realm(&self, spec: RealmSpec) -> Arc<Realm> {
        let realm = Realm::new(
            spec.name.clone(),
            spec.roles,
            spec.internal_roles,
            self.options.default_call_timeout_ms,
            self.relay.clone(),
        );
        realm_budget::spawn(&realm, self.options.outbound.realm_bytes);
        self.realms.write().insert(spec.name, realm.clone());
        realm
    }

    /// Removes a realm and closes its sessions; returns how many were closed.
    pub fn remove_realm(&self, name: &str, reason: &str, message: &str) -> usize {
        match self.realms.write().remove(name) {
            Some(realm) => realm.close_all(reason, message),
            None => 0,
        }
    }

    pub fn realm(&self, name: &str) -> Option<Arc<Realm>> {
        self.realms.read().get(name).cloned()
    }

    pub fn realm_names(&self) -> Vec<String> {
        self.realms.read().keys().cloned().collect()
    }

    /// Says GOODBYE to every session of every realm; returns how many were closed.
    pub fn close_all(&self, reason: &str, message: &str) -> usize {
        let realms: Vec<Arc<Realm>> = self.realms.read().values().cloned().collect();
        realms.iter().map(|r| r.close_all(reason, message)).sum()
    }

    /// Every client session as (realm, session id, authrole).
    pub fn client_sessions(&self) -> Vec<(Arc<Realm>, Id, String)> {
        let realms: Vec<Arc<Realm>> = self.realms.read().values().cloned().collect();
        realms
            .iter()
            .flat_map(|realm| {
                realm
                    .client_members()
                    .into_iter()
                    .map(move |(id, role)| (realm.clone(), id, role))
            })
            .collect()
    }

    pub fn session_count(&self) -> usize {
        self.realms.read().values().map(|r| r.session_count()).sum()
    }
}
