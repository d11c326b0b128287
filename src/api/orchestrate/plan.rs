//! What runs on the edge nodes for a started object: the ids and the configurations the
//! reconcilers ask the nodes for. Pure functions of the stored objects, so the same state
//! gives the same ids on every leader (a new leader finds what the last one started).
//!
//! Ids follow the reference (`../shared/spec/orchestration.md`) where they name a worker:
//! `cpw-<webcluster 8>-<i>` proxy workers and the worker group's placement names for router
//! workers, so a master that replaces the reference finds the same workers. What lives inside
//! a router worker is per application realm here (`tnp_<arealm 8>` transport, `rlm_<arealm 8>`
//! realm), where the reference had one transport per worker: a transport's principals name
//! one realm, so several application realms on one worker group each need their own.

use serde_json::json;

use crate::store::model::{Json, Node};

/// The first 8 hex characters of an oid, as the reference uses in ids.
pub fn short(oid: &uuid::Uuid) -> String {
    oid.simple().to_string()[..8].to_owned()
}

/// The proxy workers of a web cluster on a member node: `parallel` of them.
pub fn proxy_worker_ids(webcluster: &uuid::Uuid, parallel: i64) -> Vec<String> {
    (0..parallel.max(1))
        .map(|i| format!("cpw-{}-{i}", short(webcluster)))
        .collect()
}

/// The proxy transport every proxy worker of a web cluster listens on.
pub const PROXY_TRANSPORT: &str = "primary";

/// The router realm of an application realm inside a router worker.
pub fn realm_id(arealm: &uuid::Uuid) -> String {
    format!("rlm_{}", short(arealm))
}

/// The rawsocket transport of an application realm inside a router worker: router links
/// from the other workers and proxy connections from the web cluster's proxies join it.
pub fn transport_id(arealm: &uuid::Uuid) -> String {
    format!("tnp_{}", short(arealm))
}

/// The role of a realm role inside a router worker.
pub fn role_id(role: &uuid::Uuid) -> String {
    format!("rle_{}", short(role))
}

/// The role router links join with.
pub const RLINK_ROLE: &str = "rlink";
pub fn rlink_role_id(arealm: &uuid::Uuid) -> String {
    format!("rle_{}_builtin_1", short(arealm))
}

/// The link from router worker `from_worker` toward `to_worker` on `to_node`.
pub fn link_id(
    arealm: &uuid::Uuid,
    from_worker: &str,
    to_node: &uuid::Uuid,
    to_worker: &str,
) -> String {
    format!(
        "rlk_{}_{from_worker}_{}_{to_worker}",
        short(arealm),
        short(to_node)
    )
}

/// The connection a proxy worker keeps to one router worker's transport of an application
/// realm.
pub fn connection_id(arealm: &uuid::Uuid, node_authid: &str, worker: &str) -> String {
    format!("cnc_{}_{node_authid}_{worker}", short(arealm))
}

/// The interface nodes reach each other on.
pub fn cluster_ip(node: &Node) -> String {
    node.cluster_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// The ports router-worker transports are bound in (the reference's range).
pub const TRANSPORT_PORTS: [u16; 2] = [10000, 10100];

/// `start_router_transport` config of an application realm's transport: rawsocket/CBOR on a
/// port of the range, bound to the node's cluster IP (where the other nodes reach it), and
/// the member nodes of this router cluster only, by their keys, both as router links
/// (`cryptosign`) and as proxies (`cryptosign-proxy`).
/// `port` asks for a given port (the one it had before), else one of the range is picked.
pub fn transport_config(
    id: &str,
    realm: &str,
    interface: &str,
    port: Option<u16>,
    members: &[&Node],
) -> Json {
    let mut principals = serde_json::Map::new();
    for n in members {
        if let Some(authid) = &n.authid {
            principals.insert(
                authid.clone(),
                json!({"realm": realm, "role": RLINK_ROLE, "authorized_keys": [n.pubkey]}),
            );
        }
    }
    let endpoint = match port {
        Some(port) => json!({"type": "tcp", "interface": interface, "port": port}),
        None => json!({"type": "tcp", "interface": interface, "portrange": TRANSPORT_PORTS}),
    };
    json!({
        "id": id,
        "type": "rawsocket",
        "serializers": ["cbor"],
        "endpoint": endpoint,
        "auth": {
            "cryptosign": {"type": "static", "principals": principals},
            "cryptosign-proxy": {"type": "static", "principals": principals},
        },
    })
}

/// The role router links join with: everything, with caller and publisher disclosed (the
/// edge's links refuse to forward what they cannot attribute).
pub fn rlink_role() -> Json {
    json!({
        "name": RLINK_ROLE,
        "permissions": [{
            "uri": "",
            "match": "prefix",
            "allow": {"call": true, "register": true, "publish": true, "subscribe": true},
            "disclose": {"caller": true, "publisher": true},
            "cache": true,
        }],
    })
}

/// `start_router_realm` config; the meta API is bridged so `remote.realm.meta.*` works on
/// managed realms too.
pub fn realm_config(name: &str) -> Json {
    json!({"name": name, "options": {"bridge_meta_api": true}})
}

/// One permission of a stored role as the edge wants it. With `across_workers` (the realm
/// runs on several router workers) caller and publisher are disclosed whatever the role
/// says: the edge's router links refuse to forward a call or an event they cannot
/// attribute, so without it RPC and PubSub would silently stop at the worker's edge.
pub fn permission(p: &crate::store::model::Permission, across_workers: bool) -> Json {
    json!({
        "uri": p.uri,
        "match": p.match_.clone().unwrap_or_else(|| "exact".into()),
        "allow": {
            "call": p.allow_call,
            "register": p.allow_register,
            "publish": p.allow_publish,
            "subscribe": p.allow_subscribe,
        },
        "disclose": {
            "caller": p.disclose_caller || across_workers,
            "publisher": p.disclose_publisher || across_workers,
        },
        "cache": p.cache,
    })
}

/// `start_router_realm_role` config of a stored role.
pub fn role_config(
    name: &str,
    permissions: &[crate::store::model::Permission],
    across_workers: bool,
) -> Json {
    let permissions: Vec<Json> = permissions
        .iter()
        .map(|p| permission(p, across_workers))
        .collect();
    json!({"name": name, "permissions": permissions})
}

/// `start_router_realm_link` config: forward this worker's registrations and events to the
/// other worker (each side does the same toward the other, a full mesh).
pub fn link_config(realm: &str, authid: &str, host: &str, port: u16) -> Json {
    json!({
        "realm": realm,
        "authid": authid,
        "forward_local_invocations": true,
        "forward_remote_invocations": false,
        "forward_local_events": true,
        "forward_remote_events": false,
        "transport": {
            "type": "rawsocket",
            "endpoint": {"type": "tcp", "host": host, "port": port},
            "serializer": "cbor",
            "url": format!("rs://{host}:{port}"),
        },
    })
}

/// `start_proxy_connection` config toward a router worker's transport.
pub fn connection_config(host: &str, port: u16, node_authid: &str) -> Json {
    json!({
        "transport": {
            "type": "rawsocket",
            "endpoint": {"type": "tcp", "host": host, "port": port},
            "url": format!("rs://{node_authid}"),
            "serializer": "cbor",
        },
        "auth": {"cryptosign-proxy": {"type": "static"}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_use_the_first_8_hex_chars() {
        let oid = uuid::Uuid::parse_str("1234abcd-0000-4000-8000-000000000001").unwrap();
        assert_eq!(realm_id(&oid), "rlm_1234abcd");
        assert_eq!(transport_id(&oid), "tnp_1234abcd");
        assert_eq!(
            proxy_worker_ids(&oid, 2),
            vec!["cpw-1234abcd-0", "cpw-1234abcd-1"]
        );
        assert_eq!(proxy_worker_ids(&oid, 0), vec!["cpw-1234abcd-0"]);
        assert_eq!(
            connection_id(&oid, "node1", "grp_1"),
            "cnc_1234abcd_node1_grp_1"
        );
    }

    #[test]
    fn transports_admit_the_cluster_members_both_ways() {
        let node = Node {
            oid: uuid::Uuid::nil(),
            label: None,
            description: None,
            tags: None,
            owner_oid: None,
            pubkey: "ab".repeat(32),
            cluster_ip: None,
            mrealm_oid: None,
            authid: Some("node1".into()),
            authextra: None,
        };
        let c = transport_config("tnp_x", "app", "127.0.0.1", None, &[&node]);
        for method in ["cryptosign", "cryptosign-proxy"] {
            assert_eq!(
                c["auth"][method]["principals"]["node1"]["authorized_keys"][0],
                json!(node.pubkey)
            );
            assert_eq!(c["auth"][method]["principals"]["node1"]["realm"], "app");
        }
        assert_eq!(cluster_ip(&node), "127.0.0.1");
    }
}
