//! How many activation codes this replica issues: per e-mail, per source address and in
//! all, within a sliding window. Every code is a Raft write and (with SMTP) a mail, so an
//! unauthenticated client must not be able to issue them without bound; past a limit the
//! HELLO is refused with `fabric.auth-failed.rate-limited` and nothing is written or mailed.
//!
//! The limits are per replica (a cluster of N replicas issues at most N times as many).
//! Expired codes are purged through Raft by the leader ([`purge_expired`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Denied;
use crate::replica::Replica;
use crate::store::model::{ActivationToken, TOKEN_PENDING};
use crate::store::{Command, Kind};

pub const RATE_LIMITED: &str = crate::wamp::errors::AUTH_RATE_LIMITED;

/// A code is valid this long after it was issued.
pub const CODE_LIFETIME: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Copy, Debug)]
pub struct IssueLimits {
    pub per_email: usize,
    pub per_source: usize,
    pub total: usize,
    pub window: Duration,
    /// Codes pending in the whole cluster (the replicated state) at any time.
    pub pending_total: usize,
}

impl Default for IssueLimits {
    fn default() -> Self {
        IssueLimits {
            per_email: 5,
            per_source: 30,
            total: 300,
            window: CODE_LIFETIME,
            pending_total: 3000,
        }
    }
}

#[derive(Default)]
struct Windows {
    by_email: HashMap<String, VecDeque<Instant>>,
    by_source: HashMap<String, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

pub struct IssueLimiter {
    limits: IssueLimits,
    windows: Mutex<Windows>,
}

/// The address part of a transport peer (`tcp4:1.2.3.4:5678` → `1.2.3.4`).
fn source_of(peer: &str) -> &str {
    let addr = peer.split_once(':').map_or(peer, |(_, rest)| rest);
    addr.rsplit_once(':').map_or(addr, |(host, _)| host)
}

fn prune(q: &mut VecDeque<Instant>, since: Instant) {
    while q.front().is_some_and(|t| *t < since) {
        q.pop_front();
    }
}

impl IssueLimiter {
    pub fn new(limits: IssueLimits) -> IssueLimiter {
        IssueLimiter {
            limits,
            windows: Mutex::new(Windows::default()),
        }
    }

    pub fn limits(&self) -> IssueLimits {
        self.limits
    }

    /// Counts a code for `email` asked from `peer`, or refuses it.
    pub fn admit(&self, email: &str, peer: &str) -> Result<(), Denied> {
        let now = Instant::now();
        let since = now.checked_sub(self.limits.window).unwrap_or(now);
        let source = source_of(peer).to_owned();
        let mut guard = self.windows.lock();
        let w = &mut *guard;
        prune(&mut w.all, since);
        // The maps only hold addresses and e-mails seen within the window.
        if w.by_email.len() + w.by_source.len() > 20_000 {
            for q in w.by_email.values_mut().chain(w.by_source.values_mut()) {
                prune(q, since);
            }
            w.by_email.retain(|_, q| !q.is_empty());
            w.by_source.retain(|_, q| !q.is_empty());
        }
        let limits = self.limits;
        let refuse = |what: String| {
            Err(Denied::new(
                RATE_LIMITED,
                format!("too many activation codes {what}; try again later"),
            ))
        };
        if w.all.len() >= limits.total {
            return refuse("requested from this master".into());
        }
        let by_source = w.by_source.entry(source.clone()).or_default();
        prune(by_source, since);
        if by_source.len() >= limits.per_source {
            return refuse(format!("requested from {source}"));
        }
        let by_email = w.by_email.entry(email.to_owned()).or_default();
        prune(by_email, since);
        if by_email.len() >= limits.per_email {
            return refuse(format!("for {email}"));
        }
        by_email.push_back(now);
        w.by_source.entry(source).or_default().push_back(now);
        w.all.push_back(now);
        Ok(())
    }
}

/// Deletes the pending codes issued before `before_micros`, on the leader. Returns how many
/// went.
pub async fn purge_expired(replica: &Replica, before_micros: i64) -> anyhow::Result<usize> {
    let expired: Vec<String> = replica
        .read()
        .await?
        .list::<ActivationToken>("")?
        .into_iter()
        .filter(|t| t.status == TOKEN_PENDING && t.created < before_micros)
        .map(|t| t.oid.to_string())
        .collect();
    let mut purged = 0;
    for key in expired {
        let gone = replica
            .propose(Command::Delete {
                kind: Kind::ActivationToken,
                key,
                cascade: false,
            })
            .await;
        // Used or purged meanwhile (by a replica that led before): nothing to do.
        if gone.is_ok() {
            purged += 1;
        }
    }
    Ok(purged)
}

/// Runs the purge every few minutes while this replica leads.
pub fn spawn_purge(replica: std::sync::Arc<Replica>) {
    let weak = std::sync::Arc::downgrade(&replica);
    drop(replica);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(replica) = weak.upgrade() else {
                return;
            };
            if !replica.is_leader() {
                continue;
            }
            let lifetime = i64::try_from(CODE_LIFETIME.as_micros()).unwrap_or(i64::MAX);
            match purge_expired(&replica, crate::clock::now_micros() - lifetime).await {
                Ok(0) => {}
                Ok(n) => tracing::info!("purged {n} expired activation code(s)"),
                Err(e) => tracing::warn!("purging expired activation codes: {e:#}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_email: usize, per_source: usize, total: usize) -> IssueLimiter {
        IssueLimiter::new(IssueLimits {
            per_email,
            per_source,
            total,
            window: Duration::from_secs(60),
            pending_total: usize::MAX,
        })
    }

    #[test]
    fn each_limit_refuses_past_its_count() {
        let l = limiter(2, 3, 5);
        let a = "tcp4:10.0.0.1:4000";
        assert!(l.admit("x@e.com", a).is_ok());
        assert!(l.admit("x@e.com", "tcp4:10.0.0.1:4001").is_ok());
        let e = l.admit("x@e.com", a).unwrap_err();
        assert_eq!(e.uri, RATE_LIMITED);
        assert!(e.message.contains("x@e.com"), "{}", e.message);
        assert!(l.admit("y@e.com", a).is_ok());
        let e = l.admit("z@e.com", a).unwrap_err();
        assert!(e.message.contains("10.0.0.1"), "{}", e.message);
        assert!(l.admit("z@e.com", "tcp4:10.0.0.2:1").is_ok());
        assert!(l.admit("w@e.com", "tcp4:10.0.0.3:1").is_ok());
        let e = l.admit("v@e.com", "tcp4:10.0.0.4:1").unwrap_err();
        assert!(e.message.contains("this master"), "{}", e.message);
    }

    #[test]
    fn sources_are_addresses_without_ports() {
        assert_eq!(source_of("tcp4:127.0.0.1:41234"), "127.0.0.1");
        assert_eq!(source_of("tcp6:::1:41234"), "::1");
    }
}
