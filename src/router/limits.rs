//! What one client session may hold at once: calls waiting for their result, registrations
//! and subscriptions. Each costs the router memory for as long as it is held, so a client
//! that opens them without end would exhaust a replica; past its limit a request is refused
//! with `fabric.error.limit-exceeded` and what it holds stays as it was. The master's own
//! sessions have no limits (one backend session carries every user's remote calls).

use super::realm::State;
use crate::wamp::Id;

/// The limits of one client session (flags `--max-pending-calls`, `--max-registrations`,
/// `--max-subscriptions`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionLimits {
    pub pending_calls: usize,
    pub registrations: usize,
    pub subscriptions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            pending_calls: 10_000,
            registrations: 10_000,
            subscriptions: 10_000,
        }
    }
}

/// What a session holds that its limits count.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Held {
    PendingCalls,
    Registrations,
    Subscriptions,
}

impl Held {
    fn noun(self) -> &'static str {
        match self {
            Held::PendingCalls => "pending calls",
            Held::Registrations => "registrations",
            Held::Subscriptions => "subscriptions",
        }
    }

    fn limit(self, limits: &SessionLimits) -> usize {
        match self {
            Held::PendingCalls => limits.pending_calls,
            Held::Registrations => limits.registrations,
            Held::Subscriptions => limits.subscriptions,
        }
    }
}

/// How much of each a session holds now.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pending_calls: usize,
    registrations: usize,
    subscriptions: usize,
}

impl Usage {
    fn of(&mut self, what: Held) -> &mut usize {
        match what {
            Held::PendingCalls => &mut self.pending_calls,
            Held::Registrations => &mut self.registrations,
            Held::Subscriptions => &mut self.subscriptions,
        }
    }
}

impl State {
    /// Why session `sid` may not take one more `what`, if it holds as many as it may.
    pub(crate) fn over_limit(&mut self, sid: Id, what: Held) -> Option<String> {
        let m = self.members.get_mut(&sid)?;
        let limit = what.limit(m.limits.as_ref()?);
        let held = *m.usage.of(what);
        (held >= limit).then(|| {
            format!(
                "this session holds {held} {} already, as many as a session may",
                what.noun()
            )
        })
    }

    /// Session `sid` took one more `what` (`taken`), or gave one back.
    pub(crate) fn count(&mut self, sid: Id, what: Held, taken: bool) {
        if let Some(m) = self.members.get_mut(&sid) {
            let n = m.usage.of(what);
            *n = if taken { *n + 1 } else { n.saturating_sub(1) };
        }
    }
}
