//! Leaving a registration or a subscription: the same steps for both, the differences
//! (message types, error URIs, meta topics) named by [`EntryKind`].

use super::limits::Held;
use super::realm::{State, error_reply};
use super::uri_index::{Left, leave};
use crate::wamp::{Id, Message, errors, message::code};

#[derive(Clone, Copy)]
pub(crate) enum EntryKind {
    Subscription,
    Registration,
}

impl EntryKind {
    fn noun(self) -> &'static str {
        match self {
            EntryKind::Subscription => "subscription",
            EntryKind::Registration => "registration",
        }
    }

    /// The meta events of leaving, and of the entry going away with its last member.
    fn meta_topics(self) -> (&'static str, &'static str) {
        match self {
            EntryKind::Subscription => (
                "wamp.subscription.on_unsubscribe",
                "wamp.subscription.on_delete",
            ),
            EntryKind::Registration => (
                "wamp.registration.on_unregister",
                "wamp.registration.on_delete",
            ),
        }
    }

    fn answer(self, request: Id, left: &Left, id: Id) -> Message {
        let (request_type, missing) = match self {
            EntryKind::Subscription => (code::UNSUBSCRIBE, errors::NO_SUCH_SUBSCRIPTION),
            EntryKind::Registration => (code::UNREGISTER, errors::NO_SUCH_REGISTRATION),
        };
        if !left.was_member() {
            let message = format!("no {} with ID {id}", self.noun());
            return error_reply(request_type, request, missing, message);
        }
        match self {
            EntryKind::Subscription => Message::Unsubscribed {
                request,
                details: None,
            },
            EntryKind::Registration => Message::Unregistered {
                request,
                details: None,
            },
        }
    }
}

impl State {
    /// Takes session `sid` off entry `id`, deleting the entry with its last member, and
    /// publishes the meta events.
    pub(crate) fn leave_entry(&mut self, kind: EntryKind, sid: Id, id: Id) -> Left {
        let left = match kind {
            EntryKind::Subscription => {
                leave(&mut self.broker.subs, &mut self.broker.index, id, sid)
            }
            EntryKind::Registration => {
                leave(&mut self.dealer.regs, &mut self.dealer.index, id, sid)
            }
        };
        let (left_topic, deleted_topic) = kind.meta_topics();
        let meta = [sid.into(), id.into()];
        if left.was_member() {
            let held = match kind {
                EntryKind::Subscription => Held::Subscriptions,
                EntryKind::Registration => Held::Registrations,
            };
            self.count(sid, held, false);
            self.publish_meta(left_topic, meta.to_vec());
        }
        if matches!(left, Left::Deleted) {
            self.publish_meta(deleted_topic, meta.to_vec());
        }
        left
    }

    /// UNSUBSCRIBE or UNREGISTER: leaves, then answers the request.
    pub(crate) fn answer_leave(&mut self, kind: EntryKind, sid: Id, request: Id, id: Id) {
        let left = self.leave_entry(kind, sid, id);
        self.reply(sid, kind.answer(request, &left, id));
    }
}
