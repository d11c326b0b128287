//! Type checks of the well-known keys in options and details dictionaries.
//!
//! A peer that sends `acknowledge: "yes"` or `exclude: ["bob"]` violates the protocol; catching it
//! here keeps the router's own logic free of type juggling.

use super::message::{MAX_ID, Message};
use super::value::{Dict, Value};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{message}: option '{key}' {problem}")]
pub struct OptionError {
    pub message: &'static str,
    pub key: String,
    pub problem: &'static str,
}

enum Rule {
    Bool,
    Str,
    Id,
    NonNegInt,
    IdList,
    StrList,
    DictList,
    OneOf(&'static [&'static str]),
}

fn rule_for(key: &str) -> Option<Rule> {
    use Rule::*;
    Some(match key {
        "acknowledge"
        | "exclude_me"
        | "retain"
        | "get_retained"
        | "retained"
        | "x_acknowledged_delivery"
        | "disclose_me"
        | "receive_progress"
        | "progress"
        | "force_reregister" => Bool,
        "exclude" | "eligible" => IdList,
        "exclude_authid" | "exclude_authrole" | "eligible_authid" | "eligible_authrole" => StrList,
        "transaction_hash" | "publisher_authid" | "publisher_authrole" | "caller_authid"
        | "caller_authrole" | "topic" | "procedure" | "enc_serializer" | "ppt_scheme"
        | "ppt_serializer" | "ppt_cipher" | "ppt_keyid" => Str,
        "publisher" | "caller" => Id,
        "timeout" => NonNegInt,
        "forward_for" => DictList,
        "match" => OneOf(&["exact", "prefix", "wildcard"]),
        "invoke" => OneOf(&["single", "roundrobin", "random", "first", "last"]),
        "mode" => OneOf(&["skip", "kill", "killnowait"]),
        "enc_algo" => OneOf(&["cryptobox", "mqtt", "xbr"]),
        _ => return None,
    })
}

fn check(rule: &Rule, v: &Value) -> Result<(), &'static str> {
    let is_id = |v: &Value| matches!(v.as_u64(), Some(id) if id <= MAX_ID);
    let ok = match rule {
        Rule::Bool => matches!(v, Value::Bool(_)),
        Rule::Str => matches!(v, Value::Str(_)),
        Rule::Id => is_id(v),
        Rule::NonNegInt => v.as_u64().is_some(),
        Rule::IdList => matches!(v, Value::List(l) if l.iter().all(is_id)),
        Rule::StrList => {
            matches!(v, Value::List(l) if l.iter().all(|x| matches!(x, Value::Str(_))))
        }
        Rule::DictList => {
            matches!(v, Value::List(l) if l.iter().all(|x| matches!(x, Value::Dict(_))))
        }
        Rule::OneOf(allowed) => matches!(v, Value::Str(s) if allowed.contains(&s.as_str())),
    };
    if ok {
        Ok(())
    } else {
        Err(match rule {
            Rule::Bool => "must be a boolean",
            Rule::Str => "must be a string",
            Rule::Id => "must be an id",
            Rule::NonNegInt => "must be a non-negative integer",
            Rule::IdList => "must be a list of ids",
            Rule::StrList => "must be a list of strings",
            Rule::DictList => "must be a list of dicts",
            Rule::OneOf(_) => "has a value that is not allowed",
        })
    }
}

fn validate_dict(message: &'static str, d: &Dict) -> Result<(), OptionError> {
    for (key, v) in d {
        if let Some(rule) = rule_for(key) {
            check(&rule, v).map_err(|problem| OptionError {
                message,
                key: key.clone(),
                problem,
            })?;
        }
    }
    Ok(())
}

/// Checks the options or details of a message; other message parts are checked when parsed.
pub fn validate(msg: &Message) -> Result<(), OptionError> {
    let name = msg.name();
    match msg {
        Message::Publish { options: d, .. }
        | Message::Subscribe { options: d, .. }
        | Message::Call { options: d, .. }
        | Message::Register { options: d, .. }
        | Message::Cancel { options: d, .. }
        | Message::Interrupt { options: d, .. }
        | Message::Yield { options: d, .. }
        | Message::Event { details: d, .. }
        | Message::Invocation { details: d, .. }
        | Message::Result { details: d, .. } => validate_dict(name, d),
        _ => Ok(()),
    }
}
