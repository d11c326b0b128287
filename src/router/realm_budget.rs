//! The outbound byte budget of a realm: what may wait for all of a realm's sessions together,
//! so that one realm's slow readers cannot take the whole replica's budget from the others.
//!
//! The per-session and per-replica budgets are checked on every send (`transport::outbox`);
//! this one is swept: every `SWEEP` the realm sums what waits for its sessions, and while it
//! holds more than its budget the sessions with the largest queues are dropped, as slow
//! consumers. Senders never wait; the realm may run over by what arrives in one sweep, which
//! the replica budget still bounds.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::realm::Realm;

/// How often a realm checks its budget.
const SWEEP: Duration = Duration::from_millis(100);

/// Drops the sessions with the largest queues while the realm holds more than `budget`
/// bytes; returns how many were dropped.
pub(crate) fn enforce(realm: &Realm, budget: usize) -> usize {
    realm.with_state(|st| {
        let mut queues: Vec<(usize, crate::wamp::Id)> = st
            .members
            .iter()
            // The master's own sessions hold nothing: they take what they are sent at once.
            .filter(|(_, m)| m.limits.is_some())
            .map(|(sid, m)| (m.tx.queued_bytes(), *sid))
            .collect();
        let mut total: usize = queues.iter().map(|(q, _)| q).sum();
        if total <= budget {
            return 0;
        }
        queues.sort_unstable_by(|a, b| b.cmp(a));
        let mut dropped = 0;
        for (queued, sid) in queues {
            if total <= budget || queued == 0 {
                break;
            }
            if let Some(m) = st.members.get(&sid) {
                tracing::warn!(
                    session = sid, authid = %m.info.authid, realm = %realm.name, queued,
                    "dropping slow session: the realm holds {total} bytes for its sessions, over its budget of {budget}"
                );
                m.kill.notify_one();
                total -= queued;
                crate::metrics::meters().count_slow_session_dropped();
                dropped += 1;
            }
        }
        dropped
    })
}

/// Sweeps `realm` until it is gone (no-op outside a runtime, or without a budget).
pub(crate) fn spawn(realm: &Arc<Realm>, budget: usize) {
    if budget == usize::MAX {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let realm: Weak<Realm> = Arc::downgrade(realm);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(realm) = realm.upgrade() else {
                return;
            };
            enforce(&realm, budget);
        }
    });
}
