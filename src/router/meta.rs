//! The WAMP meta API: sessions, registrations and subscriptions of a realm, answered by the router.

use crate::wamp::uri::MatchPolicy;
use crate::wamp::{Dict, Id, Message, Payload, Value, errors, message::code};

use super::realm::{State, error_reply};

type MetaResult = Result<Value, (&'static str, String)>;

fn arg_id(payload: &Payload, i: usize, what: &str) -> Result<Id, (&'static str, String)> {
    payload.arg_list().get(i).and_then(Value::as_u64).ok_or((
        errors::INVALID_ARGUMENT,
        format!("argument {i} must be a {what} ID"),
    ))
}

fn arg_str<'a>(
    payload: &'a Payload,
    i: usize,
    what: &str,
) -> Result<&'a str, (&'static str, String)> {
    payload.arg_list().get(i).and_then(Value::as_str).ok_or((
        errors::INVALID_ARGUMENT,
        format!("argument {i} must be a {what}"),
    ))
}

fn lookup_policy(payload: &Payload) -> MatchPolicy {
    payload
        .arg_list()
        .get(1)
        .and_then(Value::as_dict)
        .and_then(|o| o.get("match"))
        .and_then(Value::as_str)
        .and_then(MatchPolicy::parse)
        .unwrap_or_default()
}

fn ids(v: impl Iterator<Item = Id>) -> Value {
    Value::List(v.map(Value::from).collect())
}

impl State {
    pub(crate) fn meta_call(&mut self, sid: Id, request: Id, procedure: &str, payload: &Payload) {
        let result = self.meta_dispatch(sid, procedure, payload);
        let msg = match result {
            Ok(v) => Message::Result {
                request,
                details: Dict::new(),
                payload: Payload::args(vec![v]),
            },
            Err((uri, text)) => error_reply(code::CALL, request, uri, text),
        };
        self.reply(sid, msg);
    }

    fn meta_dispatch(&mut self, sid: Id, procedure: &str, p: &Payload) -> MetaResult {
        match procedure {
            "wamp.session.count" | "wamp.session.list" => {
                let filter: Option<Vec<&str>> = p
                    .arg_list()
                    .first()
                    .and_then(Value::as_list)
                    .map(|l| l.iter().filter_map(Value::as_str).collect());
                let matching = self.members.values().filter(|m| {
                    filter
                        .as_ref()
                        .is_none_or(|f| f.contains(&m.info.authrole.as_str()))
                });
                Ok(if procedure.ends_with("count") {
                    Value::from(matching.count())
                } else {
                    ids(matching.map(|m| m.info.id))
                })
            }
            "wamp.session.get" => {
                let id = arg_id(p, 0, "session")?;
                self.members
                    .get(&id)
                    .map(|m| Value::Dict(m.info.to_details()))
                    .ok_or((errors::NO_SUCH_SESSION, format!("no session with ID {id}")))
            }
            "wamp.session.kill" => {
                let id = arg_id(p, 0, "session")?;
                if id == sid {
                    return Err((
                        errors::INVALID_ARGUMENT,
                        "a session cannot kill itself".into(),
                    ));
                }
                let (reason, message) = kill_reason(p);
                if self.kill(id, &reason, &message) {
                    Ok(Value::Null)
                } else {
                    Err((errors::NO_SUCH_SESSION, format!("no session with ID {id}")))
                }
            }
            "wamp.session.kill_by_authid" | "wamp.session.kill_by_authrole" => {
                let key = arg_str(
                    p,
                    0,
                    if procedure.ends_with("authid") {
                        "authid"
                    } else {
                        "authrole"
                    },
                )?
                .to_owned();
                let by_role = procedure.ends_with("authrole");
                let (reason, message) = kill_reason(p);
                let targets: Vec<Id> = self
                    .members
                    .values()
                    .filter(|m| {
                        m.info.id != sid
                            && if by_role {
                                m.info.authrole == key
                            } else {
                                m.info.authid == key
                            }
                    })
                    .map(|m| m.info.id)
                    .collect();
                let killed: Vec<Id> = targets
                    .into_iter()
                    .filter(|id| self.kill(*id, &reason, &message))
                    .collect();
                Ok(ids(killed.into_iter()))
            }
            "wamp.registration.list" => {
                let of = |pol: MatchPolicy| {
                    ids(self
                        .dealer
                        .regs
                        .values()
                        .filter(|r| r.policy == pol)
                        .map(|r| r.id))
                };
                Ok(Value::Dict(crate::dict! {
                    "exact" => of(MatchPolicy::Exact),
                    "prefix" => of(MatchPolicy::Prefix),
                    "wildcard" => of(MatchPolicy::Wildcard),
                }))
            }
            "wamp.registration.lookup" => {
                let uri = arg_str(p, 0, "procedure URI")?;
                Ok(self.dealer.index.get(lookup_policy(p), uri).into())
            }
            "wamp.registration.match" => Ok(self
                .dealer
                .index
                .best_match(arg_str(p, 0, "procedure URI")?)
                .into()),
            "wamp.registration.get" => {
                let id = arg_id(p, 0, "registration")?;
                self.dealer
                    .regs
                    .get(&id)
                    .map(|r| Value::Dict(r.details()))
                    .ok_or(no_registration(id))
            }
            "wamp.registration.list_callees" | "wamp.registration.count_callees" => {
                let id = arg_id(p, 0, "registration")?;
                let reg = self.dealer.regs.get(&id).ok_or(no_registration(id))?;
                Ok(if procedure.ends_with("count_callees") {
                    Value::from(reg.callees.len())
                } else {
                    ids(reg.callees.iter().copied())
                })
            }
            "wamp.subscription.list" => {
                let of = |pol: MatchPolicy| {
                    ids(self
                        .broker
                        .subs
                        .values()
                        .filter(|s| s.policy == pol)
                        .map(|s| s.id))
                };
                Ok(Value::Dict(crate::dict! {
                    "exact" => of(MatchPolicy::Exact),
                    "prefix" => of(MatchPolicy::Prefix),
                    "wildcard" => of(MatchPolicy::Wildcard),
                }))
            }
            "wamp.subscription.lookup" => {
                let uri = arg_str(p, 0, "topic URI")?;
                Ok(self.broker.index.get(lookup_policy(p), uri).into())
            }
            "wamp.subscription.match" => {
                let found = self.broker.index.all_matching(arg_str(p, 0, "topic URI")?);
                Ok(if found.is_empty() {
                    Value::Null
                } else {
                    ids(found.into_iter())
                })
            }
            "wamp.subscription.get" => {
                let id = arg_id(p, 0, "subscription")?;
                self.broker
                    .subs
                    .get(&id)
                    .map(|s| Value::Dict(s.details()))
                    .ok_or(no_subscription(id))
            }
            "wamp.subscription.list_subscribers" | "wamp.subscription.count_subscribers" => {
                let id = arg_id(p, 0, "subscription")?;
                let sub = self.broker.subs.get(&id).ok_or(no_subscription(id))?;
                Ok(if procedure.ends_with("count_subscribers") {
                    Value::from(sub.subscribers.len())
                } else {
                    ids(sub.subscribers.iter().copied())
                })
            }
            _ => Err((
                errors::NO_SUCH_PROCEDURE,
                format!("no callee registered for procedure <{procedure}>"),
            )),
        }
    }
}

fn kill_reason(p: &Payload) -> (String, String) {
    let reason = p
        .kwarg("reason")
        .and_then(Value::as_str)
        .unwrap_or(errors::CLOSE_KILLED)
        .to_owned();
    let message = p
        .kwarg("message")
        .and_then(Value::as_str)
        .unwrap_or("session killed by the router's meta API")
        .to_owned();
    (reason, message)
}

fn no_registration(id: Id) -> (&'static str, String) {
    (
        errors::NO_SUCH_REGISTRATION,
        format!("no registration with ID {id}"),
    )
}

fn no_subscription(id: Id) -> (&'static str, String) {
    (
        errors::NO_SUCH_SUBSCRIPTION,
        format!("no subscription with ID {id}"),
    )
}
