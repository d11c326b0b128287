//! PubSub: subscriptions, publication filtering and delivery.

use std::collections::HashMap;

use crate::wamp::uri::{MatchPolicy, UriCheck, is_valid_pattern, is_valid_uri};
use crate::wamp::{Dict, Id, Message, Payload, Value, errors, message::code};

use super::leave::EntryKind;
use super::limits::Held;
use super::realm::{State, error_reply};
use super::role::Action;
use super::uri_index::{Entry, Left, UriIndex};

pub(crate) struct Subscription {
    pub id: Id,
    pub uri: String,
    pub policy: MatchPolicy,
    /// In subscription order.
    pub subscribers: Vec<Id>,
    pub created: String,
}

impl Subscription {
    pub fn details(&self) -> Dict {
        crate::dict! {
            "id" => self.id,
            "created" => self.created.as_str(),
            "uri" => self.uri.as_str(),
            "match" => self.policy.as_str(),
        }
    }
}

impl Entry for Subscription {
    fn key(&self) -> (MatchPolicy, &str) {
        (self.policy, &self.uri)
    }
    fn members(&self) -> &Vec<Id> {
        &self.subscribers
    }
    fn members_mut(&mut self) -> &mut Vec<Id> {
        &mut self.subscribers
    }
}

#[derive(Default)]
pub(crate) struct Broker {
    pub subs: HashMap<Id, Subscription>,
    pub index: UriIndex,
}

/// The PUBLISH options that choose who receives an event; they travel with relayed events.
pub const AUDIENCE_OPTIONS: [&str; 6] = [
    "exclude",
    "exclude_authid",
    "exclude_authrole",
    "eligible",
    "eligible_authid",
    "eligible_authrole",
];

/// Who may receive a publication, from its options.
struct Audience<'a> {
    publisher: Option<Id>,
    exclude_me: bool,
    exclude: Option<&'a [Value]>,
    exclude_authid: Option<&'a [Value]>,
    exclude_authrole: Option<&'a [Value]>,
    eligible: Option<&'a [Value]>,
    eligible_authid: Option<&'a [Value]>,
    eligible_authrole: Option<&'a [Value]>,
}

fn contains_id(list: &[Value], id: Id) -> bool {
    list.iter().any(|v| v.as_u64() == Some(id))
}

fn contains_str(list: &[Value], s: &str) -> bool {
    list.iter().any(|v| v.as_str() == Some(s))
}

impl<'a> Audience<'a> {
    fn from_options(publisher: Option<Id>, options: &'a Dict) -> Self {
        let list = |k: &str| options.get(k).and_then(Value::as_list).map(Vec::as_slice);
        Audience {
            publisher,
            exclude_me: options
                .get("exclude_me")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            exclude: list("exclude"),
            exclude_authid: list("exclude_authid"),
            exclude_authrole: list("exclude_authrole"),
            eligible: list("eligible"),
            eligible_authid: list("eligible_authid"),
            eligible_authrole: list("eligible_authrole"),
        }
    }

    fn admits(&self, sid: Id, authid: &str, authrole: &str) -> bool {
        if self.exclude_me && self.publisher == Some(sid) {
            return false;
        }
        if self.exclude.is_some_and(|l| contains_id(l, sid))
            || self.exclude_authid.is_some_and(|l| contains_str(l, authid))
            || self
                .exclude_authrole
                .is_some_and(|l| contains_str(l, authrole))
        {
            return false;
        }
        self.eligible.is_none_or(|l| contains_id(l, sid))
            && self.eligible_authid.is_none_or(|l| contains_str(l, authid))
            && self
                .eligible_authrole
                .is_none_or(|l| contains_str(l, authrole))
    }
}

impl State {
    pub(crate) fn subscribe(&mut self, sid: Id, request: Id, options: Dict, topic: String) {
        let policy = options
            .get("match")
            .and_then(Value::as_str)
            .and_then(MatchPolicy::parse)
            .unwrap_or_default();
        if !is_valid_pattern(&topic, policy, UriCheck::Loose) {
            return self.reply(
                sid,
                error_reply(
                    code::SUBSCRIBE,
                    request,
                    errors::INVALID_URI,
                    format!("invalid topic URI '{topic}'"),
                ),
            );
        }
        if !self.authorized(sid, &topic, Action::Subscribe) {
            return self.reply(
                sid,
                error_reply(
                    code::SUBSCRIBE,
                    request,
                    errors::NOT_AUTHORIZED,
                    format!("session is not authorized to subscribe to topic '{topic}'"),
                ),
            );
        }
        if let Some(why) = self.over_limit(sid, Held::Subscriptions) {
            return self.reply(
                sid,
                error_reply(code::SUBSCRIBE, request, errors::LIMIT_EXCEEDED, why),
            );
        }
        let (sub_id, created) = match self.broker.index.get(policy, &topic) {
            Some(id) => (id, false),
            None => {
                let id = self.new_id();
                let sub = Subscription {
                    id,
                    uri: topic.clone(),
                    policy,
                    subscribers: Vec::new(),
                    created: crate::clock::now_iso(),
                };
                self.broker.subs.insert(id, sub);
                self.broker.index.insert(policy, topic, id);
                (id, true)
            }
        };
        let sub = self
            .broker
            .subs
            .get_mut(&sub_id)
            .expect("just found or created");
        let added = !sub.subscribers.contains(&sid);
        if added {
            sub.subscribers.push(sid);
        }
        let details = created.then(|| sub.details());
        if added {
            self.count(sid, Held::Subscriptions, true);
        }
        self.reply(
            sid,
            Message::Subscribed {
                request,
                subscription: sub_id,
            },
        );
        if let Some(details) = details {
            self.publish_meta(
                "wamp.subscription.on_create",
                vec![sid.into(), Value::Dict(details)],
            );
        }
        if added {
            self.publish_meta(
                "wamp.subscription.on_subscribe",
                vec![sid.into(), sub_id.into()],
            );
        }
    }

    pub(crate) fn unsubscribe(&mut self, sid: Id, request: Id, subscription: Id) {
        self.answer_leave(EntryKind::Subscription, sid, request, subscription);
    }

    /// Takes a subscriber off a subscription, deleting the subscription when it was the last.
    pub(crate) fn remove_subscriber(&mut self, sid: Id, subscription: Id) -> Left {
        self.leave_entry(EntryKind::Subscription, sid, subscription)
    }

    pub(crate) fn broker_detach(&mut self, sid: Id) {
        let subs: Vec<Id> = self
            .broker
            .subs
            .values()
            .filter(|s| s.subscribers.contains(&sid))
            .map(|s| s.id)
            .collect();
        for sub in subs {
            self.remove_subscriber(sid, sub);
        }
    }

    pub(crate) fn publish(
        &mut self,
        sid: Id,
        request: Id,
        options: Dict,
        topic: String,
        payload: Payload,
    ) {
        let acknowledge = options
            .get("acknowledge")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !is_valid_uri(&topic, UriCheck::Loose) {
            self.meters.publication_refused(errors::INVALID_URI);
            if acknowledge {
                self.reply(
                    sid,
                    error_reply(
                        code::PUBLISH,
                        request,
                        errors::INVALID_URI,
                        format!("invalid topic URI '{topic}'"),
                    ),
                );
            }
            return;
        }
        let Some(rule) = self.rule(sid, &topic, Action::Publish) else {
            self.meters.publication_refused(errors::NOT_AUTHORIZED);
            if acknowledge {
                self.reply(
                    sid,
                    error_reply(
                        code::PUBLISH,
                        request,
                        errors::NOT_AUTHORIZED,
                        format!("session is not authorized to publish to topic '{topic}'"),
                    ),
                );
            }
            return;
        };
        let disclose = rule.disclose_publisher
            || options
                .get("disclose_me")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let publication = crate::wamp::random_id();
        let publisher = self.members.get(&sid).map(|m| m.info.clone());
        let mut base = Dict::new();
        if disclose && let Some(p) = &publisher {
            base.insert("publisher".into(), sid.into());
            base.insert("publisher_authid".into(), p.authid.as_str().into());
            base.insert("publisher_authrole".into(), p.authrole.as_str().into());
        }
        self.meters.published();
        self.relay_out(&topic, &options, &base, &payload);
        self.deliver(Some(sid), &options, &topic, publication, base, payload);
        if acknowledge {
            self.reply(
                sid,
                Message::Published {
                    request,
                    publication,
                },
            );
        }
    }

    /// Publishes an event of the router itself (meta events): no publisher, no options.
    pub(crate) fn publish_meta(&mut self, topic: &str, args: Vec<Value>) {
        if self.broker.subs.is_empty() {
            return;
        }
        self.publish_meta_payload(topic, Payload::args(args));
    }

    pub(crate) fn publish_meta_payload(&mut self, topic: &str, payload: Payload) {
        self.publish_meta_with(topic, payload, &Dict::new());
    }

    /// A publication of the router itself, restricted by PUBLISH options (`eligible_authrole`,
    /// `exclude_authrole`, …) as a client's would be.
    pub(crate) fn publish_meta_with(&mut self, topic: &str, payload: Payload, options: &Dict) {
        if self.broker.subs.is_empty() {
            return;
        }
        let publication = crate::wamp::random_id();
        self.deliver(None, options, topic, publication, Dict::new(), payload);
    }

    /// Hands a publication to the relay.
    pub(crate) fn relay_out(&self, topic: &str, options: &Dict, details: &Dict, payload: &Payload) {
        if let Some(relay) = &self.relay.relay {
            relay.relay(&self.relay.realm, topic, options, details, payload);
        }
    }

    pub(crate) fn deliver_relayed(
        &mut self,
        topic: &str,
        options: &Dict,
        details: Dict,
        payload: Payload,
    ) {
        if self.broker.subs.is_empty() {
            return;
        }
        let publication = crate::wamp::random_id();
        self.deliver(None, options, topic, publication, details, payload);
    }

    fn deliver(
        &self,
        publisher: Option<Id>,
        options: &Dict,
        topic: &str,
        publication: Id,
        base: Dict,
        payload: Payload,
    ) {
        let audience = Audience::from_options(publisher, options);
        let mut delivered = 0;
        for sub_id in self.broker.index.all_matching(topic) {
            let sub = &self.broker.subs[&sub_id];
            let mut details = base.clone();
            if sub.policy != MatchPolicy::Exact {
                details.insert("topic".into(), topic.into());
            }
            let event = super::session_info::Outbound::new(Message::Event {
                subscription: sub_id,
                publication,
                details,
                payload: payload.clone(),
            });
            for s in &sub.subscribers {
                if let Some(m) = self.members.get(s)
                    && audience.admits(*s, &m.info.authid, &m.info.authrole)
                {
                    m.send_arc(event.clone());
                    delivered += 1;
                }
            }
        }
        self.meters.delivered(delivered);
    }
}
