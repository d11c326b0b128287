//! The table of `remote.*` procedures: which node-side procedure each forwards to, at which
//! level (node, worker, realm…), and who may call it.

use super::*;

/// Management calls may start workers or pull images; they get this long.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Level {
    /// `(node_oid, *args)` → `crossbarfabriccenter.node.<authid>.<proc>`.
    Node,
    /// `(node_oid, worker_id, *args)` → `….node.<authid>.worker.<worker_id>.<proc>`.
    Worker,
}

pub(super) struct Api {
    pub(super) name: &'static str,
    pub(super) level: Level,
    /// (remote name, node-side name); most are the same.
    pub(super) procs: &'static [(&'static str, &'static str)],
}

macro_rules! same {
    ($($p:literal),* $(,)?) => { &[$(($p, $p)),*] };
}

pub(super) const APIS: [Api; 7] = [
    Api {
        name: "node",
        level: Level::Node,
        procs: same!(
            "get_cpu_count",
            "get_cpu_affinity",
            "set_cpu_affinity",
            "get_process_info",
            "get_process_stats",
            "set_process_stats_monitoring",
            "trigger_gc",
            "start_manhole",
            "stop_manhole",
            "get_manhole",
            "get_status",
            "get_system_stats",
            "shutdown",
            "get_worker_log",
            "get_workers",
            "get_worker",
            "start_worker",
            "stop_worker",
        ),
    },
    Api {
        name: "worker",
        level: Level::Worker,
        procs: same!(
            "shutdown",
            "get_status",
            "get_pythonpath",
            "add_pythonpath",
            "get_cpu_affinity",
            "set_cpu_affinity",
            "get_profilers",
            "start_profiler",
            "get_profile",
            "get_process_info",
            "get_process_stats",
            "set_process_stats_monitoring",
        ),
    },
    Api {
        name: "router",
        level: Level::Worker,
        procs: same!(
            "get_router_realms",
            "get_router_realm",
            "get_router_realm_stats",
            "get_router_realm_by_name",
            "start_router_realm",
            "stop_router_realm",
            "get_router_realm_roles",
            "get_router_realm_role",
            "start_router_realm_role",
            "stop_router_realm_role",
            "get_router_transports",
            "get_router_transport",
            "start_router_transport",
            "stop_router_transport",
            "get_web_transport_services",
            "get_web_transport_service",
            "start_web_transport_service",
            "stop_web_transport_service",
            "get_router_components",
            "get_router_component",
            "start_router_component",
            "stop_router_component",
            "get_router_realm_links",
            "get_router_realm_link",
            "start_router_realm_link",
            "stop_router_realm_link",
        ),
    },
    Api {
        name: "container",
        level: Level::Worker,
        procs: same!(
            "get_components",
            "get_component",
            "start_component",
            "stop_component"
        ),
    },
    Api {
        name: "proxy",
        level: Level::Worker,
        procs: same!(
            "get_proxy_transports",
            "get_proxy_transport",
            "start_proxy_transport",
            "stop_proxy_transport",
            "get_web_transport_services",
            "get_web_transport_service",
            "start_web_transport_service",
            "stop_web_transport_service",
            "get_proxy_routes",
            "get_proxy_realm_route",
            "list_proxy_realm_routes",
            "start_proxy_realm_route",
            "stop_proxy_realm_route",
            "get_proxy_connections",
            "get_proxy_connection",
            "start_proxy_connection",
            "stop_proxy_connection",
        ),
    },
    Api {
        name: "tracing",
        level: Level::Worker,
        procs: same!(
            "get_traces",
            "get_trace",
            "start_trace",
            "stop_trace",
            "get_trace_data"
        ),
    },
    Api {
        name: "docker",
        level: Level::Node,
        procs: &[
            ("get_info", "get_docker_info"),
            ("get_ping", "get_docker_ping"),
            ("get_version", "get_docker_version"),
            ("get_df", "get_docker_df"),
            ("get_containers", "get_docker_containers"),
            ("get_container", "get_docker_container"),
            ("get_images", "get_docker_images"),
            ("get_image", "get_docker_image"),
            ("fs_open", "fs_docker_open"),
            ("fs_get", "fs_docker_get"),
            ("fs_put", "fs_docker_put"),
            ("create", "create_docker_container"),
            ("start", "start_docker_container"),
            ("stop", "stop_docker_container"),
            ("restart", "restart_docker_container"),
            ("pause", "pause_docker_container"),
            ("unpause", "unpause_docker_container"),
            ("destroy", "destroy_docker_container"),
            ("delete_image", "delete_docker_image"),
            ("prune_images", "prune_docker_images"),
            ("request_tty", "request_docker_tty"),
            ("watch", "watch_docker_container"),
            ("shell", "shell_docker_container"),
            ("backlog", "backlog_docker_container"),
            ("keystroke", "keystroke_docker_container"),
        ],
    },
];

/// Users and guests may only look; changing a node takes owner or admin.
pub(super) fn may_call(role: Option<&str>, remote_name: &str) -> Result<(), CallError> {
    let read_only = ["get_", "list_"].iter().any(|p| remote_name.starts_with(p));
    match role {
        Some("owner" | "admin") => Ok(()),
        Some("user" | "guest") if read_only => Ok(()),
        role => Err(CallError::new(
            NOT_AUTHORIZED,
            format!("role {role:?} may not call {remote_name} on nodes"),
        )),
    }
}
