//! Management realms as router realms: every replica keeps one router realm per mrealm in
//! the replicated state, and closes node sessions whose pairing is gone. It reconciles the
//! router with the state after changes, so a replica that learns of a change from the log
//! or from a snapshot ends up the same as the one that served the call.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::replica::Replica;
use crate::router::{RealmSpec, Router};
use crate::store::Index;
use crate::store::model::{ManagementRealm, Node, Presence, User, UserMrealmRole, UserRole};

use super::Ctx;
use super::backend::Backend;

/// A management realm, its roles from the authorization table.
pub fn mrealm_spec(name: &str) -> RealmSpec {
    RealmSpec {
        name: name.to_owned(),
        roles: crate::authz::MANAGEMENT.roles(),
        internal_roles: crate::authz::MANAGEMENT.internal_roles(),
    }
}

pub struct RealmSync {
    router: Arc<Router>,
    replica: Arc<Replica>,
    /// The router realms this replica created for mrealms, with their backends.
    managed: Mutex<HashMap<String, Arc<Backend>>>,
    /// The same backends for lookups that cannot wait (routed node calls).
    backends: parking_lot::RwLock<HashMap<String, Arc<Backend>>>,
    /// The context holding this; built together with it (`Arc::new_cyclic`).
    ctx: Weak<Ctx>,
}

impl RealmSync {
    pub fn new(router: Arc<Router>, replica: Arc<Replica>, ctx: Weak<Ctx>) -> Arc<RealmSync> {
        Arc::new(RealmSync {
            router,
            replica,
            managed: Mutex::new(HashMap::new()),
            backends: Default::default(),
            ctx,
        })
    }

    /// The backend serving management realm `name` here.
    pub fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        self.backends.read().get(name).cloned()
    }

    pub fn router_realm(&self, name: &str) -> Option<Arc<crate::router::realm::Realm>> {
        self.router.realm(name)
    }

    /// Reconciles after every applied change (at most every 50 ms).
    pub fn spawn(self: &Arc<Self>) {
        let me = self.clone();
        let mut metrics = self.replica.raft.metrics();
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                let applied = metrics.borrow().last_applied;
                if applied != seen {
                    seen = applied;
                    if let Err(e) = me.reconcile().await {
                        tracing::warn!("reconciling management realms: {e}");
                    }
                }
                if metrics.changed().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// Brings the router in line with this replica's state.
    pub async fn reconcile(&self) -> Result<(), crate::store::StoreError> {
        let mut managed = self.managed.lock().await;
        let r = self.replica.reader()?;
        let mrealms: Vec<ManagementRealm> = r.list("")?;
        let wanted: HashSet<String> = mrealms.iter().map(|m| m.name.clone()).collect();
        let gone: Vec<String> = managed
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for gone in gone {
            if let Some(b) = managed.remove(&gone) {
                b.stop();
            }
            self.backends.write().remove(&gone);
            let closed = self.router.remove_realm(
                &gone,
                crate::wamp::errors::CLOSE_KILLED,
                "the management realm was deleted",
            );
            tracing::info!("management realm {gone} removed ({closed} sessions closed)");
        }
        for m in &mrealms {
            if !managed.contains_key(&m.name) {
                if self.router.realm(&m.name).is_some() {
                    tracing::warn!(
                        "management realm {} clashes with a configured realm",
                        m.name
                    );
                    continue;
                }
                let Some(ctx) = self.ctx.upgrade() else {
                    continue;
                };
                let realm = self.router.add_realm(mrealm_spec(&m.name));
                match super::backend::start(ctx, realm, m).await {
                    Ok(b) => {
                        managed.insert(m.name.clone(), b.clone());
                        self.backends.write().insert(m.name.clone(), b);
                        tracing::info!("management realm {} is served", m.name);
                    }
                    Err(e) => {
                        tracing::error!(
                            "management realm {}: its backend did not start: {} {}",
                            m.name,
                            e.uri,
                            e.message
                        );
                        self.router.remove_realm(
                            &m.name,
                            crate::wamp::errors::CLOSE_KILLED,
                            "the management realm's backend did not start",
                        );
                        continue;
                    }
                }
            }
            // Node sessions whose pairing is gone (unpaired, re-paired elsewhere) are closed.
            let Some(realm) = self.router.realm(&m.name) else {
                continue;
            };
            for (authid, authrole) in realm.members() {
                if authrole != "node" {
                    self.close_revoked(&r, &realm, m, &authid, &authrole)?;
                    continue;
                }
                let key = format!("{}/{authid}", m.oid);
                if r.lookup::<Node>(Index::NodeByAuthid, &key)?.is_none() {
                    let killed = realm.kill_by_authid(
                        &authid,
                        "wamp.close.auth-changed",
                        "the node was unpaired",
                    );
                    tracing::info!(
                        "closed {} session(s) of unpaired node {authid}",
                        killed.len()
                    );
                }
            }
        }
        let presence: Vec<Presence> = r.list("")?;
        for b in managed.values() {
            b.controller.sync_presence(&presence);
        }
        Ok(())
    }

    /// Closes a user's sessions joined under a role the user no longer holds on the realm
    /// (`set_roles_on_mrealm_for_user` took it away). The superuser holds every role.
    fn close_revoked(
        &self,
        r: &crate::store::Reader,
        realm: &crate::router::realm::Realm,
        mrealm: &ManagementRealm,
        authid: &str,
        authrole: &str,
    ) -> Result<(), crate::store::StoreError> {
        let Some(code) = UserRole::from_name(authrole).map(UserRole::code) else {
            return Ok(());
        };
        if authid == "superuser" {
            return Ok(());
        }
        let user: Option<User> = r.lookup(Index::UserByEmail, authid)?;
        let held = match user {
            Some(u) => r
                .get::<UserMrealmRole>(&format!("{}/{}", mrealm.oid, u.oid))?
                .map(|x| x.roles)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if !held.contains(&code) {
            let killed = realm.kill_by_authid_role(
                authid,
                authrole,
                "wamp.close.auth-changed",
                "the role was revoked",
            );
            tracing::info!(
                "closed {} session(s) of {authid} as {authrole} on {}",
                killed.len(),
                mrealm.name
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::role::Action;

    #[test]
    fn the_public_role_reads_traces_and_their_events_only() {
        let spec = mrealm_spec("m1");
        let public = spec
            .roles
            .iter()
            .find(|r| r.name == "public")
            .expect("a public role");
        let p = "crossbarfabriccenter.mrealm.";
        for uri in ["get_status", "get_traces", "get_trace", "get_trace_data"] {
            assert!(
                public
                    .authorize(&format!("{p}{uri}"), Action::Call)
                    .is_some(),
                "{uri}"
            );
        }
        for uri in [
            "create_trace",
            "start_trace",
            "stop_trace",
            "delete_trace",
            "get_nodes",
        ] {
            assert!(
                public
                    .authorize(&format!("{p}{uri}"), Action::Call)
                    .is_none(),
                "{uri}"
            );
        }
        for event in ["on_trace_created", "on_trace_started", "on_trace_data"] {
            let topic = format!("{p}tracing.{event}");
            assert!(public.authorize(&topic, Action::Subscribe).is_some());
            assert!(public.authorize(&topic, Action::Publish).is_none());
        }
        assert!(
            public
                .authorize(
                    "crossbarfabriccenter.mrealm.on_node_ready",
                    Action::Subscribe
                )
                .is_none()
        );
    }
}
