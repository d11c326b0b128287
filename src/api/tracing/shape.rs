//! The wire form of traces and of per-worker failures, the errors of the tracing API, and
//! its arguments.

use super::*;

/// The reference's read check: a trace with eligible reader roles is for those roles only,
/// and excluded roles never read it.
pub(super) fn readable(t: &Trace, role: Option<&str>) -> bool {
    let role = role.unwrap_or_default();
    t.eligible_reader_roles
        .as_ref()
        .is_none_or(|l| l.iter().any(|r| r == role))
        && !t
            .exclude_reader_roles
            .as_ref()
            .is_some_and(|l| l.iter().any(|r| r == role))
}

/// The wire form of `get_trace` (the reference's `Trace.marshal()`).
pub(super) fn wire(t: &Trace) -> Value {
    to_value(serde_json::json!({
        "trace_id": t.trace_id,
        "traced_workers": t.traced_workers,
        "trace_options": t.trace_options,
        "eligible_reader_roles": t.eligible_reader_roles,
        "exclude_reader_roles": t.exclude_reader_roles,
        "status": t.status,
    }))
}

/// PUBLISH options limiting an event to the trace's readers.
pub(super) fn reader_options(trace: &Trace) -> Dict {
    let mut options = Dict::new();
    if let Some(roles) = &trace.eligible_reader_roles {
        options.insert("eligible_authrole".into(), names(roles));
    }
    if let Some(roles) = &trace.exclude_reader_roles {
        options.insert("exclude_authrole".into(), names(roles));
    }
    options
}

pub(super) fn names(roles: &[String]) -> Value {
    Value::List(roles.iter().map(|r| Value::from(r.as_str())).collect())
}

pub(super) fn parse(json: Json) -> Result<Trace, CallError> {
    serde_json::from_value(json).map_err(corrupt_record)
}

pub(super) fn no_such_trace(id: &str) -> CallError {
    CallError::new(
        "crossbar.error.no_such_object",
        format!("no trace with ID {id:?}"),
    )
}

/// A refused change, said in terms of the trace.
pub(super) fn refused(id: &str, e: ProposeError) -> CallError {
    let ProposeError::Refused(refusal) = &e else {
        return CallError::from(e);
    };
    let message = match refusal {
        ApplyError::NoSuchObject { .. } => return no_such_trace(id),
        ApplyError::Duplicate { .. } | ApplyError::AlreadyExists { .. } => {
            format!("a trace with ID {id:?} already exists")
        }
        ApplyError::CannotStart { status, .. } => {
            format!("trace {id:?} cannot be started: it is {status}")
        }
        ApplyError::CannotStop { status, .. } => {
            format!("trace {id:?} cannot be stopped: it is {status}")
        }
        ApplyError::NotStopped { status, .. } => {
            format!("trace {id:?} cannot be deleted: it is {status}")
        }
        _ => return CallError::from(e),
    };
    CallError::new(refusal_uri(refusal), message)
}

/// `{node_id, node_status, worker_id, error?}` of a worker a start or stop did not reach.
pub(super) fn failed(
    node_id: &str,
    node_status: &str,
    worker_id: &str,
    error: Option<&CallError>,
) -> Value {
    let mut d = crate::dict! {
        "node_id" => node_id,
        "node_status" => node_status,
        "worker_id" => worker_id,
    };
    if let Some(e) = error {
        d.insert("error".into(), describe(e).into());
    }
    Value::Dict(d)
}

pub(super) fn describe(e: &CallError) -> String {
    format!("{}: {}", e.uri, e.message)
}

/// Node answers into the success list (workers without a trace to stop add nothing), and
/// the `failed` entries.
pub(super) fn split(outcomes: Vec<Outcome>) -> (Vec<Value>, Vec<Value>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for o in outcomes {
        match o {
            Ok(Some(v)) => done.push(v),
            Ok(None) => {}
            Err(f) => failed.push(f),
        }
    }
    (done, failed)
}

/// Trace ids are keys within the realm and go to nodes and events as they are.
pub(super) fn valid_trace_id(id: &str) -> bool {
    (1..=255).contains(&id.len()) && !id.contains('/') && !id.chars().any(char::is_control)
}

pub(super) fn trace_id_arg(inv: &Invocation) -> Result<String, CallError> {
    let id = str_arg(inv, 0, "trace_id")?;
    if !valid_trace_id(id) {
        return Err(bad_argument(format!(
            "trace_id {id:?} must be 1..255 characters without '/' or control characters"
        )));
    }
    Ok(id.to_owned())
}

/// Node and worker ids become parts of node procedure URIs.
pub(super) fn valid_component(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id.contains(['.', '#'])
        && !id.contains(char::is_whitespace)
}

/// `[[node_id, worker_id], …]`, node ids being oids or authids; repeats are dropped.
pub(super) fn traced_workers_arg(inv: &Invocation) -> Result<Vec<(String, String)>, CallError> {
    let Some(Value::List(items)) = inv.arg(1).or_else(|| inv.kwarg("traced_workers")) else {
        return Err(bad_argument(
            "traced_workers (a list of [node_id, worker_id] pairs) is required",
        ));
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(items.len());
    for item in items {
        let pair = match item {
            Value::List(p) if p.len() == 2 => p[0].as_str().zip(p[1].as_str()),
            _ => None,
        };
        let Some((node, worker)) = pair.filter(|(n, w)| valid_component(n) && valid_component(w))
        else {
            return Err(bad_argument(format!(
                "traced_workers: {:?} is not a [node_id, worker_id] pair of ids",
                to_json(item)
            )));
        };
        let pair = (node.to_owned(), worker.to_owned());
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    Ok(out)
}

/// Optional trace options: a dict or null. The node checks what they say.
pub(super) fn options_arg(inv: &Invocation) -> Result<Option<Json>, CallError> {
    match inv.arg(2).or_else(|| inv.kwarg("trace_options")) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Dict(_)) => Ok(Some(to_json(v))),
        Some(_) => Err(bad_argument("trace_options must be a dict")),
    }
}

/// An optional list of role names; an empty list restricts nothing, as in the reference.
pub(super) fn roles_arg(
    inv: &Invocation,
    i: usize,
    name: &str,
) -> Result<Option<Vec<String>>, CallError> {
    let items = match inv.arg(i).or_else(|| inv.kwarg(name)) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::List(l)) => l,
        Some(_) => return Err(bad_argument(format!("{name} must be a list of role names"))),
    };
    let mut roles: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(r) if !r.is_empty() => {
                if !roles.iter().any(|x| x == r) {
                    roles.push(r.to_owned());
                }
            }
            _ => {
                return Err(bad_argument(format!(
                    "{name}: {:?} is not a role name",
                    to_json(item)
                )));
            }
        }
    }
    Ok((!roles.is_empty()).then_some(roles))
}

/// `limit` of `get_trace_data`: absent (the node's default) or 1..=10000.
pub(super) fn limit_arg(inv: &Invocation) -> Result<Option<i64>, CallError> {
    match inv.arg(1).or_else(|| inv.kwarg("limit")) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .map(Some)
            .ok_or_else(|| bad_argument(format!("limit must be an integer 1..{MAX_LIMIT}"))),
    }
}
