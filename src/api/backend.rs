//! The backend of one management realm on this replica: an internal session on the realm
//! that registers the realm's API (controller, remote forwarding, the object groups of
//! `mrealm_handlers`, and tracing), follows node sessions and events, and runs the periodic tick and
//! liveness probe until the realm goes away.

use std::sync::Arc;

use tokio::sync::watch;

use super::controller::{Controller, PROBE_PERIOD, TICK_PERIOD};
use super::orchestrate::Orchestrator;
use super::remote::Forwarder;
use super::scope::Scope;
use super::tracing::{REMOTE_TRACE_DATA, Tracing};
use super::{Ctx, Publisher};
use crate::router::internal::{CallError, Event, EventHandler, InternalSession};
use crate::router::realm::Realm;
use crate::store::model::ManagementRealm;

/// The authid of the master's own sessions on management realms.
pub const BACKEND_AUTHID: &str = "fabric-master";

pub struct Backend {
    pub controller: Arc<Controller>,
    realm: Arc<Realm>,
    stop: watch::Sender<bool>,
}

impl Backend {
    /// Ends the periodic tasks (the session ends with its realm).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        // The retargeting holds the backend, which holds the realm: drop it, or the realm
        // would outlive its removal.
        self.realm.set_call_retarget(None);
    }
}

fn on<F: Fn(Event) + Send + Sync + 'static>(f: F) -> EventHandler {
    Arc::new(f)
}

pub async fn start(
    ctx: Arc<Ctx>,
    realm: Arc<Realm>,
    mrealm: &ManagementRealm,
) -> Result<Arc<Backend>, CallError> {
    let mut session = InternalSession::join_with_permissions_of(
        realm.clone(),
        BACKEND_AUTHID,
        "owner",
        crate::authz::MASTER_ROLE,
    );
    let scope = Arc::new(Scope {
        ctx,
        mrealm_oid: mrealm.oid,
        mrealm_name: mrealm.name.clone(),
        events: Publisher::new(realm.clone()),
    });
    let caller = session.caller();
    let controller = Controller::new(scope.clone(), caller.clone());
    let forwarder = Forwarder::new(scope.clone(), caller);
    let orchestrator = Orchestrator::new(scope.clone(), forwarder.clone());
    let tracing = Tracing::new(scope.clone(), forwarder.clone());
    for (uri, handler) in controller
        .handlers()
        .into_iter()
        .chain(super::mrealm_handlers(&scope))
        .chain(tracing.handlers())
    {
        session.register(&uri, false, handler).await?;
    }
    for (uri, prefix, handler) in forwarder.handlers() {
        session.register(&uri, prefix, handler).await?;
    }
    realm.set_call_retarget(Some(forwarder.direct_routes()));
    {
        let c = controller.clone();
        session
            .subscribe(
                "wamp.session.on_join",
                false,
                on(move |ev| c.on_session_join(ev)),
            )
            .await?;
        let c = controller.clone();
        session
            .subscribe(
                "wamp.session.on_leave",
                false,
                on(move |ev| c.on_session_leave(ev)),
            )
            .await?;
        let c = controller.clone();
        session
            .subscribe(
                "crossbarfabriccenter.node.",
                true,
                on(move |ev| match ev.topic.as_str() {
                    "crossbarfabriccenter.node.on_heartbeat" => c.on_heartbeat(&ev),
                    // Worker heartbeats are for subscribers; the reference's log of them is
                    // not kept (it would put every heartbeat through the replicated log).
                    "crossbarfabriccenter.node.on_worker_heartbeat" => {}
                    _ => forwarder.republish(&ev),
                }),
            )
            .await?;
    }
    {
        // Trace data arrives on the replica holding the node's session, republished by the
        // forwarder under remote.tracing; each replica passes on what its nodes send.
        let t = tracing.clone();
        session
            .subscribe(
                REMOTE_TRACE_DATA,
                false,
                on(move |ev| t.on_remote_trace_data(&ev)),
            )
            .await?;
    }
    tokio::spawn(session.serve());
    tokio::spawn(tracing.recover());
    let (stop, stopped) = watch::channel(false);
    orchestrator.spawn(stopped.clone());
    spawn_periodic(controller.clone(), stopped);
    Ok(Arc::new(Backend {
        controller,
        realm,
        stop,
    }))
}

fn spawn_periodic(controller: Arc<Controller>, mut stopped: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK_PERIOD);
        let mut probe = tokio::time::interval(PROBE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first ticks of an interval fire at once; the realm has just started.
        tick.tick().await;
        probe.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => controller.tick(),
                _ = probe.tick() => {
                    let c = controller.clone();
                    // A slow node must not hold up the tick.
                    tokio::spawn(async move { c.probe().await });
                }
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        return;
                    }
                }
            }
        }
    });
}
