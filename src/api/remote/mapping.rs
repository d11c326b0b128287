//! How a `remote.*` call maps onto the node's own procedure (arguments, ids, worker
//! procedures), and how node events map onto `crossbarfabriccenter.remote.*` topics.

use super::*;

/// The leading string arguments `names` (positional or keyword), and whether the rest of
/// the positional arguments start after them.
pub(super) fn split_args(
    payload: &Payload,
    n: usize,
    names: &[&str],
) -> Result<(Vec<String>, bool), CallError> {
    let mut ids = Vec::with_capacity(n);
    let args = positional_args(payload);
    let positional = args.len() >= n;
    for (i, name) in names.iter().enumerate().take(n) {
        let v = if positional {
            args.get(i)
        } else {
            payload.kwargs.as_ref().and_then(|k| k.get(*name))
        };
        match v.and_then(Value::as_str) {
            Some(s) => ids.push(s.to_owned()),
            None => {
                return Err(CallError::new(
                    INVALID_ARGUMENT,
                    format!("{name} (a string) is required as argument {i}"),
                ));
            }
        }
    }
    Ok((ids, positional))
}

/// Arguments after the addressing ones, and keyword arguments without the addressing ones
/// and without `details` (which the reference's forwarder drops).
pub(super) fn forwarded_payload(payload: &Payload, skip: usize, positional: bool) -> Payload {
    let args: Vec<Value> = if positional {
        positional_args(payload)
            .iter()
            .skip(skip)
            .cloned()
            .collect()
    } else {
        positional_args(payload).to_vec()
    };
    let kwargs = payload.kwargs.as_ref().map(|k| {
        k.iter()
            .filter(|(name, _)| {
                name.as_str() != "details"
                    && (positional
                        || !["node_oid", "node_id", "worker_id", "realm_id"]
                            .contains(&name.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<crate::wamp::Dict>()
    });
    Payload {
        args: Some(Value::List(args)),
        kwargs: kwargs.filter(|k| !k.is_empty()),
    }
}

/// The procedure a node registers for one of its workers.
pub(super) fn worker_procedure(authid: &str, worker_id: &str, node_name: &str) -> String {
    format!("crossbarfabriccenter.node.{authid}.worker.{worker_id}.{node_name}")
}

pub(super) fn positional_args(payload: &Payload) -> &[Value] {
    match &payload.args {
        Some(Value::List(l)) => l,
        _ => &[],
    }
}

/// Worker and realm ids become URI components: they must be one.
pub(super) fn check_id(id: &str, what: &str) -> Result<(), CallError> {
    if id.is_empty() || id.contains(['.', '#', ' ']) {
        return Err(bad_argument(format!(
            "{what} {id:?} cannot be part of a URI"
        )));
    }
    Ok(())
}

/// The reference's extraction pattern for authids and worker ids: `[a-z0-9][a-z0-9_\-]*`.
pub(super) fn is_component(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Node-level event names and the remote API they belong to.
pub(super) fn node_topic_api(t: &str) -> Option<&'static str> {
    const NODE: [&str; 15] = [
        "on_node_starting",
        "on_node_started",
        "on_node_heartbeat",
        "on_node_stopping",
        "on_node_stopped",
        "on_router_starting",
        "on_router_started",
        "on_container_starting",
        "on_container_started",
        "on_guest_starting",
        "on_guest_started",
        "on_proxy_starting",
        "on_proxy_started",
        "on_xbrmm_starting",
        "on_xbrmm_started",
    ];
    const DOCKER: [&str; 10] = [
        "on_container_create",
        "on_container_start",
        "on_container_attach",
        "on_container_commit",
        "on_container_kill",
        "on_container_die",
        "on_container_stop",
        "on_container_destroy",
        "on_container_pause",
        "on_container_unpause",
    ];
    if NODE.contains(&t) {
        Some("node")
    } else if DOCKER.contains(&t) || t.starts_with("on_image_") || t.starts_with("on_docker_image_")
    {
        Some("docker")
    } else {
        None
    }
}

/// Worker-level event names (as the node publishes them) → (remote API, remote name). The
/// node's names for log lines, realms and components differ from the reference's remote
/// names, which therefore never fired there; here they are mapped.
pub(super) fn worker_topic_api(t: &str) -> Option<(&'static str, String)> {
    let router_kinds = [
        "on_router_realm_",
        "on_router_realm_role_",
        "on_router_transport_",
        "on_web_transport_service_",
        "on_router_component_",
    ];
    let phase = |s: &str| matches!(s, "starting" | "started" | "stopping" | "stopped");
    if t == "on_log" || t == "on_worker_log" {
        return Some(("worker", "on_worker_log".into()));
    }
    if t == "on_profile_started" || t == "on_profile_finished" {
        return Some(("worker", t.into()));
    }
    if let Some(p) = t.strip_prefix("on_realm_")
        && phase(p)
    {
        return Some(("router", format!("on_router_realm_{p}")));
    }
    for k in router_kinds {
        if let Some(p) = t.strip_prefix(k)
            && phase(p)
        {
            return Some(("router", t.into()));
        }
    }
    if let Some(p) = t.strip_prefix("on_container_component_")
        && phase(p)
    {
        return Some(("container", t.into()));
    }
    if let Some(p) = t.strip_prefix("on_component_") {
        let p = match p {
            "start" | "started" => "started",
            "stop" | "stopped" => "stopped",
            _ => return None,
        };
        return Some(("container", format!("on_container_component_{p}")));
    }
    if let Some(p) = t.strip_prefix("on_proxy_transport_")
        && phase(p)
    {
        return Some(("proxy", t.into()));
    }
    if matches!(t, "on_trace_started" | "on_trace_stopped" | "on_trace_data") {
        return Some(("tracing", t.into()));
    }
    None
}

/// The remote topic and arguments for a node event, if it has one.
pub(super) fn remote_topic(topic: &str, args: &[Value]) -> Option<(String, Vec<Value>)> {
    let rest = topic.strip_prefix("crossbarfabriccenter.node.")?;
    let (authid, tail) = rest.split_once('.')?;
    if !is_component(authid) {
        return None;
    }
    let with = |prefix: Vec<Value>| prefix.into_iter().chain(args.iter().cloned()).collect();
    if !tail.contains('.') {
        let api = node_topic_api(tail)?;
        return Some((
            format!("crossbarfabriccenter.remote.{api}.{tail}"),
            with(vec![authid.into()]),
        ));
    }
    let tail = tail.strip_prefix("worker.")?;
    let (worker, t) = tail.split_once('.')?;
    if !is_component(worker) {
        return None;
    }
    if let Some(realm_tail) = t.strip_prefix("realm.") {
        let (realm_id, meta) = realm_tail.split_once(".root.")?;
        return Some((
            format!("{REALM_META_PREFIX}{}", meta.replace('-', ".")),
            with(vec![authid.into(), worker.into(), realm_id.into()]),
        ));
    }
    if t.contains('.') {
        return None;
    }
    let (api, name) = worker_topic_api(t)?;
    Some((
        format!("crossbarfabriccenter.remote.{api}.{name}"),
        with(vec![authid.into(), worker.into()]),
    ))
}
