//! Letting the sessions of a stopping replica go (NATS' "lame duck" mode): the caller has
//! already turned `/readyz` to 503 and waited for the load balancer; here every client
//! session gets GOODBYE `wamp.close.system_shutdown`, spread over a window so that they do
//! not all reconnect to the survivors in the same instant.
//!
//! Clients (shells, management sessions) go first and edge nodes last: a client that
//! reconnects elsewhere still reaches the nodes held here (calls are routed to this replica
//! until the nodes move), while a node that moved first would fail the calls its clients
//! have in flight here.

use std::sync::Arc;
use std::time::Duration;

use crate::router::{Realm, Router};
use crate::wamp::Id;
use crate::wamp::errors::CLOSE_SYSTEM_SHUTDOWN;

/// The role edge nodes join management realms with.
const NODE_ROLE: &str = "node";

/// Closes every client session of `router`, clients first and nodes last, spread evenly over
/// `window`; returns how many were closed.
pub async fn close_sessions(router: &Router, window: Duration) -> usize {
    let sessions = in_drain_order(router.client_sessions());
    let total = sessions.len();
    if total == 0 {
        return 0;
    }
    let started = tokio::time::Instant::now();
    let mut closed = 0;
    for (i, (realm, id, _)) in sessions.into_iter().enumerate() {
        // Session i leaves at i/total of the window.
        let due = started + window.mul_f64(i as f64 / total as f64);
        tokio::time::sleep_until(due).await;
        if realm.kill_session(
            id,
            CLOSE_SYSTEM_SHUTDOWN,
            "the master replica is shutting down",
        ) {
            closed += 1;
        }
    }
    closed
}

fn in_drain_order(mut sessions: Vec<(Arc<Realm>, Id, String)>) -> Vec<(Arc<Realm>, Id, String)> {
    // Stable: within each group, the order the router listed them.
    sessions.sort_by_key(|(_, _, role)| role == NODE_ROLE);
    sessions
}
