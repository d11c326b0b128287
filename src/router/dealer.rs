//! RPC: registrations, invocation policies, pending calls, cancel, progress and timeouts.
//!
//! Long because the dealer is one state machine (registrations, calls, invocations,
//! cancels, timeouts, progressive results) whose transitions share the same tables.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use crate::metrics::{self, CallPath};
use crate::wamp::uri::{MatchPolicy, UriCheck, is_valid_pattern, is_valid_uri};
use crate::wamp::{Dict, Id, Message, Payload, Value, errors, message::code};

use super::leave::EntryKind;
use super::limits::Held;
use super::realm::{Realm, State, error_reply};
use super::role::Action;
use super::uri_index::{Entry, Left, UriIndex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvokePolicy {
    Single,
    RoundRobin,
    Random,
    First,
    Last,
}

impl InvokePolicy {
    pub fn parse(s: &str) -> Option<InvokePolicy> {
        Some(match s {
            "single" => InvokePolicy::Single,
            "roundrobin" => InvokePolicy::RoundRobin,
            "random" => InvokePolicy::Random,
            "first" => InvokePolicy::First,
            "last" => InvokePolicy::Last,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InvokePolicy::Single => "single",
            InvokePolicy::RoundRobin => "roundrobin",
            InvokePolicy::Random => "random",
            InvokePolicy::First => "first",
            InvokePolicy::Last => "last",
        }
    }
}

pub(crate) struct Registration {
    pub id: Id,
    pub uri: String,
    pub policy: MatchPolicy,
    pub invoke: InvokePolicy,
    /// In registration order, which `first`/`last` rely on.
    pub callees: Vec<Id>,
    pub next_rr: usize,
    pub created: String,
    /// `REGISTER.Options.disclose_caller`: the callee learns who calls (backends need it).
    pub disclose_caller: bool,
}

impl Registration {
    pub fn details(&self) -> Dict {
        crate::dict! {
            "id" => self.id,
            "created" => self.created.as_str(),
            "uri" => self.uri.as_str(),
            "match" => self.policy.as_str(),
            "invoke" => self.invoke.as_str(),
        }
    }

    fn pick(&mut self) -> Option<Id> {
        let n = self.callees.len();
        if n == 0 {
            return None;
        }
        Some(match self.invoke {
            InvokePolicy::Single | InvokePolicy::First => self.callees[0],
            InvokePolicy::Last => self.callees[n - 1],
            InvokePolicy::Random => self.callees[rand::random::<usize>() % n],
            InvokePolicy::RoundRobin => {
                let c = self.callees[self.next_rr % n];
                self.next_rr = (self.next_rr + 1) % n;
                c
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelMode {
    Skip,
    Kill,
    KillNoWait,
}

impl Entry for Registration {
    fn key(&self) -> (MatchPolicy, &str) {
        (self.policy, &self.uri)
    }
    fn members(&self) -> &Vec<Id> {
        &self.callees
    }
    fn members_mut(&mut self) -> &mut Vec<Id> {
        &mut self.callees
    }
}

pub(crate) struct PendingCall {
    caller: Id,
    call_request: Id,
    callee: Id,
    progress: bool,
    /// Set by a `kill` cancel: the caller waits for the callee's final answer.
    interrupted: bool,
    timer: Option<tokio::task::AbortHandle>,
    started: std::time::Instant,
    path: CallPath,
}

#[derive(Default)]
pub(crate) struct Dealer {
    pub regs: HashMap<Id, Registration>,
    pub index: UriIndex,
    pending: HashMap<Id, PendingCall>,
    by_call: HashMap<(Id, Id), Id>,
    next_invocation: Id,
}

fn options_policy(options: &Dict) -> MatchPolicy {
    options
        .get("match")
        .and_then(Value::as_str)
        .and_then(MatchPolicy::parse)
        .unwrap_or_default()
}

impl State {
    pub(crate) fn register(&mut self, sid: Id, request: Id, options: Dict, procedure: String) {
        let reply_err = |st: &State, uri: &str, msg: String| {
            st.reply(sid, error_reply(code::REGISTER, request, uri, msg));
        };
        let policy = options_policy(&options);
        if !is_valid_pattern(&procedure, policy, UriCheck::Loose) {
            return reply_err(
                self,
                errors::INVALID_URI,
                format!("invalid procedure URI '{procedure}'"),
            );
        }
        // Authorization first: a role that may not register there learns no more.
        if !self.authorized(sid, &procedure, Action::Register) {
            return reply_err(
                self,
                errors::NOT_AUTHORIZED,
                format!("session is not authorized to register procedure '{procedure}'"),
            );
        }
        if procedure.starts_with("wamp.") {
            return reply_err(
                self,
                errors::INVALID_URI,
                format!("register for restricted procedure URI '{procedure}'"),
            );
        }
        if let Some(why) = self.over_limit(sid, Held::Registrations) {
            return reply_err(self, errors::LIMIT_EXCEEDED, why);
        }
        let invoke = options
            .get("invoke")
            .and_then(Value::as_str)
            .and_then(InvokePolicy::parse)
            .unwrap_or(InvokePolicy::Single);
        let (reg_id, created) = match self.dealer.index.get(policy, &procedure) {
            Some(id) => {
                let reg = self
                    .dealer
                    .regs
                    .get_mut(&id)
                    .expect("index and registrations agree");
                if reg.invoke == InvokePolicy::Single
                    || reg.invoke != invoke
                    || reg.callees.contains(&sid)
                {
                    return reply_err(
                        self,
                        errors::PROCEDURE_ALREADY_EXISTS,
                        format!("register for already registered procedure '{procedure}'"),
                    );
                }
                reg.callees.push(sid);
                (id, false)
            }
            None => {
                let id = self.new_id();
                let reg = Registration {
                    id,
                    uri: procedure.clone(),
                    policy,
                    invoke,
                    callees: vec![sid],
                    next_rr: 0,
                    created: crate::clock::now_iso(),
                    disclose_caller: options
                        .get("disclose_caller")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                };
                self.dealer.index.insert(policy, procedure.clone(), id);
                self.dealer.regs.insert(id, reg);
                (id, true)
            }
        };
        self.count(sid, Held::Registrations, true);
        self.reply(
            sid,
            Message::Registered {
                request,
                registration: reg_id,
            },
        );
        if created {
            let details = self.dealer.regs[&reg_id].details();
            self.publish_meta(
                "wamp.registration.on_create",
                vec![sid.into(), Value::Dict(details)],
            );
        }
        self.publish_meta(
            "wamp.registration.on_register",
            vec![sid.into(), reg_id.into()],
        );
    }

    pub(crate) fn unregister(&mut self, sid: Id, request: Id, registration: Id) {
        self.answer_leave(EntryKind::Registration, sid, request, registration);
    }

    /// Takes a callee off a registration, deleting the registration when it was the last one.
    pub(crate) fn remove_callee(&mut self, sid: Id, registration: Id) -> Left {
        self.leave_entry(EntryKind::Registration, sid, registration)
    }

    pub(crate) fn call(
        &mut self,
        realm: &Weak<Realm>,
        sid: Id,
        request: Id,
        options: Dict,
        procedure: String,
        payload: Payload,
    ) {
        // A request id still in flight identifies the first call: a second one under it would
        // make its answers and cancels ambiguous (WAMP: ids of a session's open requests are
        // unique), so it is refused and the first goes on.
        if self.dealer.by_call.contains_key(&(sid, request)) {
            return self.reply(
                sid,
                error_reply(
                    code::CALL,
                    request,
                    errors::PROTOCOL_VIOLATION,
                    format!("request id {request} is already in use by a call in flight"),
                ),
            );
        }
        if let Some(why) = self.over_limit(sid, Held::PendingCalls) {
            return self.reply(
                sid,
                error_reply(code::CALL, request, errors::LIMIT_EXCEEDED, why),
            );
        }
        if !is_valid_uri(&procedure, UriCheck::Loose) {
            return self.reply(
                sid,
                error_reply(
                    code::CALL,
                    request,
                    errors::INVALID_URI,
                    format!("invalid procedure URI '{procedure}'"),
                ),
            );
        }
        let Some(rule) = self.rule(sid, &procedure, Action::Call) else {
            return self.reply(
                sid,
                error_reply(
                    code::CALL,
                    request,
                    errors::NOT_AUTHORIZED,
                    format!("session is not authorized to call procedure '{procedure}'"),
                ),
            );
        };
        let disclose = rule.disclose_caller
            || options
                .get("disclose_me")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        // Calls under the retargeting prefix (`remote.*` in a management realm) are timed
        // apart, whether retargeted straight to the node's callee or served by their backend.
        let path = match &self.retarget {
            Some(r) if procedure.starts_with(r.prefix()) => CallPath::Remote,
            _ => CallPath::Local,
        };
        let (procedure, payload) = self.retargeted(sid, procedure, payload);
        let Some(reg_id) = self.dealer.index.best_match(&procedure) else {
            if procedure.starts_with("wamp.") {
                return self.meta_call(sid, request, &procedure, &payload);
            }
            return self.reply(
                sid,
                error_reply(
                    code::CALL,
                    request,
                    errors::NO_SUCH_PROCEDURE,
                    format!("no callee registered for procedure <{procedure}>"),
                ),
            );
        };
        let reg = self
            .dealer
            .regs
            .get_mut(&reg_id)
            .expect("lookup returns live registrations");
        let callee = reg.pick().expect("registrations have callees");
        let non_exact = reg.policy != MatchPolicy::Exact;
        let disclose = disclose || reg.disclose_caller;
        let Some(callee_member) = self.members.get(&callee) else {
            return self.reply(
                sid,
                error_reply(
                    code::CALL,
                    request,
                    errors::NO_SUCH_PROCEDURE,
                    "callee is gone".into(),
                ),
            );
        };
        let caller_member = self.members.get(&sid).expect("caller is a member");
        let mut details = Dict::new();
        if non_exact {
            details.insert("procedure".into(), Value::Str(procedure.clone()));
        }
        let progress = options
            .get("receive_progress")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            && callee_member.info.callee_progressive_results;
        if progress {
            details.insert("receive_progress".into(), Value::Bool(true));
        }
        if disclose {
            details.insert("caller".into(), sid.into());
            details.insert(
                "caller_authid".into(),
                caller_member.info.authid.as_str().into(),
            );
            details.insert(
                "caller_authrole".into(),
                caller_member.info.authrole.as_str().into(),
            );
        }
        let timeout_ms = options
            .get("timeout")
            .and_then(Value::as_u64)
            .filter(|t| *t > 0)
            .or(self.default_call_timeout_ms);
        if let Some(ms) = timeout_ms {
            details.insert("timeout".into(), ms.into());
        }
        self.dealer.next_invocation += 1;
        let inv = self.dealer.next_invocation;
        let timer = timeout_ms.map(|ms| {
            let realm = realm.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if let Some(realm) = realm.upgrade() {
                    realm.with_state(|st| st.call_timed_out(inv, ms));
                }
            })
            .abort_handle()
        });
        self.dealer.pending.insert(
            inv,
            PendingCall {
                caller: sid,
                call_request: request,
                callee,
                progress,
                interrupted: false,
                timer,
                started: std::time::Instant::now(),
                path,
            },
        );
        self.dealer.by_call.insert((sid, request), inv);
        callee_member.send(Message::Invocation {
            request: inv,
            registration: reg_id,
            details,
            payload,
        });
        self.count(sid, Held::PendingCalls, true);
    }

    /// The call as the realm's retargeting serves it, when it does and the target has a
    /// callee here; the call unchanged otherwise.
    fn retargeted(&self, sid: Id, procedure: String, payload: Payload) -> (String, Payload) {
        let Some(r) = &self.retarget else {
            return (procedure, payload);
        };
        if !procedure.starts_with(r.prefix()) {
            return (procedure, payload);
        }
        let Some(caller) = self.members.get(&sid) else {
            return (procedure, payload);
        };
        match r.retarget(&procedure, &caller.info.authrole, &payload) {
            Some((target, args)) if self.dealer.index.best_match(&target).is_some() => {
                (target, args)
            }
            _ => (procedure, payload),
        }
    }

    pub(crate) fn yield_(&mut self, sid: Id, request: Id, options: Dict, payload: Payload) {
        let Some(p) = self.dealer.pending.get(&request) else {
            return;
        };
        if p.callee != sid {
            return;
        }
        let is_progress = options
            .get("progress")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if is_progress {
            if p.progress && !p.interrupted {
                let msg = Message::Result {
                    request: p.call_request,
                    details: crate::dict! {"progress" => true},
                    payload,
                };
                self.reply(p.caller, msg);
            }
            return;
        }
        let p = self.finish(request).expect("pending was just seen");
        self.reply(
            p.caller,
            Message::Result {
                request: p.call_request,
                details: Dict::new(),
                payload,
            },
        );
    }

    pub(crate) fn invocation_error(
        &mut self,
        sid: Id,
        request: Id,
        details: Dict,
        error: String,
        payload: Payload,
    ) {
        if self
            .dealer
            .pending
            .get(&request)
            .is_none_or(|p| p.callee != sid)
        {
            return;
        }
        let p = self.finish(request).expect("pending was just seen");
        self.reply(
            p.caller,
            Message::Error {
                request_type: code::CALL,
                request: p.call_request,
                details,
                error,
                payload,
            },
        );
    }

    pub(crate) fn cancel(&mut self, sid: Id, request: Id, options: Dict) {
        let Some(&inv) = self.dealer.by_call.get(&(sid, request)) else {
            return;
        };
        let mode = match options.get("mode").and_then(Value::as_str) {
            Some("skip") => CancelMode::Skip,
            Some("kill") => CancelMode::Kill,
            _ => CancelMode::KillNoWait,
        };
        let callee_can_cancel = {
            let p = &self.dealer.pending[&inv];
            self.members
                .get(&p.callee)
                .is_some_and(|m| m.info.callee_call_canceling)
        };
        // A callee that cannot be interrupted gets `skip` whatever was asked.
        let mode = if callee_can_cancel {
            mode
        } else {
            CancelMode::Skip
        };
        match mode {
            CancelMode::Kill => {
                let p = self.dealer.pending.get_mut(&inv).expect("indexed pending");
                if !p.interrupted {
                    p.interrupted = true;
                    let callee = p.callee;
                    self.reply(
                        callee,
                        Message::Interrupt {
                            request: inv,
                            options: crate::dict! {"mode" => "kill"},
                        },
                    );
                }
            }
            CancelMode::Skip | CancelMode::KillNoWait => {
                let p = self.finish(inv).expect("indexed pending");
                if mode == CancelMode::KillNoWait {
                    self.reply(
                        p.callee,
                        Message::Interrupt {
                            request: inv,
                            options: crate::dict! {"mode" => "killnowait"},
                        },
                    );
                }
                self.reply(
                    sid,
                    error_reply(
                        code::CALL,
                        request,
                        errors::CANCELED,
                        "call canceled by the caller".into(),
                    ),
                );
            }
        }
    }

    fn call_timed_out(&mut self, inv: Id, ms: u64) {
        let Some(p) = self.finish(inv) else { return };
        if self
            .members
            .get(&p.callee)
            .is_some_and(|m| m.info.callee_call_canceling)
        {
            let options = crate::dict! {"mode" => "killnowait", "reason" => errors::TIMEOUT};
            self.reply(
                p.callee,
                Message::Interrupt {
                    request: inv,
                    options,
                },
            );
        }
        self.reply(
            p.caller,
            error_reply(
                code::CALL,
                p.call_request,
                errors::TIMEOUT,
                format!("call timed out after {ms} ms"),
            ),
        );
    }

    /// Forgets a pending call and its timer.
    fn finish(&mut self, inv: Id) -> Option<PendingCall> {
        let p = self.dealer.pending.remove(&inv)?;
        self.dealer.by_call.remove(&(p.caller, p.call_request));
        self.count(p.caller, Held::PendingCalls, false);
        if let Some(t) = &p.timer {
            t.abort();
        }
        metrics::meters().observe_call(p.path, p.started.elapsed());
        Some(p)
    }

    /// A leaving session's calls fail for its callers, and its own calls are interrupted.
    pub(crate) fn dealer_detach(&mut self, sid: Id) {
        let involved: Vec<Id> = self
            .dealer
            .pending
            .iter()
            .filter(|(_, p)| p.callee == sid || p.caller == sid)
            .map(|(inv, _)| *inv)
            .collect();
        for inv in involved {
            let p = self.finish(inv).expect("collected above");
            if p.callee == sid {
                if p.caller != sid {
                    self.reply(
                        p.caller,
                        error_reply(
                            code::CALL,
                            p.call_request,
                            errors::CANCELED,
                            "callee disconnected from in-flight request".into(),
                        ),
                    );
                }
            } else if self
                .members
                .get(&p.callee)
                .is_some_and(|m| m.info.callee_call_canceling)
            {
                self.reply(
                    p.callee,
                    Message::Interrupt {
                        request: inv,
                        options: crate::dict! {"mode" => "killnowait"},
                    },
                );
            }
        }
        let regs: Vec<Id> = self
            .dealer
            .regs
            .values()
            .filter(|r| r.callees.contains(&sid))
            .map(|r| r.id)
            .collect();
        for reg in regs {
            self.remove_callee(sid, reg);
        }
    }
}
