//! Nodes paired to management realms: pairing, unpairing, listing, changing and deleting
//! their records, and their statistics.

use std::collections::HashSet;
use std::sync::Arc;

use super::*;
use crate::api::args::{delta_arg, flag_arg, oid_arg, str_arg};
use crate::api::errors::{bad_argument, no_such};
use crate::api::reply::record_value;
use crate::api::{Ctx, Publisher, to_json, to_value};
use crate::router::internal::Handler;
use crate::router::internal::{CallError, Invocation};
use crate::store::model::{ManagementRealm, Node, Presence};
use crate::store::{Command, Index, Kind};
use crate::wamp::Value;
use crate::wamp::errors::DEPENDENT_OBJECTS;

async fn pair_node(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let pubkey = str_arg(&inv, 0, "pubkey")?.to_ascii_lowercase();
    if crate::wamp::cryptosign::parse_pubkey(&pubkey).is_none() {
        return Err(bad_argument(format!(
            "{pubkey:?} is not a 64-hex Ed25519 key"
        )));
    }
    let realm_name = str_arg(&inv, 1, "realm_name")?.to_owned();
    let authid = str_arg(&inv, 2, "authid")?.to_owned();
    let authextra = inv
        .arg(3)
        .or_else(|| inv.kwarg("authextra"))
        .filter(|v| !matches!(v, Value::Null))
        .map(to_json);
    // Where the other nodes reach this one (router links, proxy connections): given at
    // pairing as `cluster_ip` in authextra, or under the key file tag's name.
    let cluster_ip = match authextra.as_ref().and_then(|a| {
        a.get("cluster_ip")
            .or_else(|| a.get("node-cluster-ip"))
            .cloned()
    }) {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(valid_cluster_ip(&v)?),
    };
    let mrealm = mrealm_by(&ctx, MrealmRef::Name(&realm_name))
        .await
        .map_err(|_| {
            CallError::new(
                "fabric.no-such-realm",
                format!("no management realm {realm_name:?}"),
            )
        })?;
    let owner = require_owner(&ctx.replica, &inv, &mrealm).await?;
    let node = Node {
        oid: uuid::Uuid::new_v4(),
        label: None,
        description: None,
        tags: None,
        owner_oid: Some(owner.oid),
        pubkey,
        cluster_ip,
        mrealm_oid: Some(mrealm.oid),
        authid: Some(authid),
        authextra,
    };
    let paired = ctx.replica.propose(Command::PairNode { node }).await?;
    let paired = to_value(paired);
    let audience = tenant_audience(&ctx.replica.read().await?, mrealm.oid)?;
    publisher.publish_to(
        "crossbarfabriccenter.mrealm.on_node_paired",
        vec![paired.clone()],
        &audience,
    );
    Ok(paired)
}

async fn unpair(
    ctx: &Ctx,
    publisher: &Publisher,
    inv: &Invocation,
    node: Node,
) -> Result<Value, CallError> {
    let Some(mrealm_oid) = node.mrealm_oid else {
        return Err(CallError::new(
            "fabric.node-not-paired",
            format!("node {} is not paired", node.oid),
        ));
    };
    let mrealm = mrealm_by(ctx, MrealmRef::Oid(mrealm_oid)).await?;
    require_owner(&ctx.replica, inv, &mrealm).await?;
    let router_realm = ctx.realms_router_realm(&mrealm.name);
    // The node's sessions here before the unpairing: closed by the end of this call, by the
    // kill below or by the realm sync that applies the change first.
    let before = match (&router_realm, &node.authid) {
        (Some(realm), Some(authid)) => realm.sessions_of(authid),
        _ => Vec::new(),
    };
    let paired = ctx
        .replica
        .propose(Command::UnpairNode { oid: node.oid })
        .await?;
    // Close the node's session here at once; other replicas do it when they apply.
    let mut killed = match (&router_realm, paired.get("authid").and_then(|a| a.as_str())) {
        (Some(realm), Some(authid)) => {
            realm.kill_by_authid(authid, "wamp.close.auth-changed", "the node was unpaired")
        }
        _ => Vec::new(),
    };
    for id in before {
        if !killed.contains(&id) {
            killed.push(id);
        }
    }
    let mut out = paired.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert(
            "mrealm_oid".into(),
            serde_json::Value::from(mrealm_oid.to_string()),
        );
        obj.insert("authid".into(), serde_json::Value::Null);
        obj.insert("authextra".into(), serde_json::Value::Null);
        obj.insert("killed".into(), serde_json::Value::from(killed));
    }
    let out = to_value(out);
    let audience = tenant_audience(&ctx.replica.read().await?, mrealm.oid)?;
    publisher.publish_to(
        "crossbarfabriccenter.mrealm.on_node_unpaired",
        vec![out.clone()],
        &audience,
    );
    Ok(out)
}

async fn unpair_node(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "node_oid")?;
    let r = ctx.replica.read().await?;
    let node: Node = r
        .get(&oid.to_string())?
        .ok_or_else(|| CallError::new("crossbar.error.no_such_object", format!("no node {oid}")))?;
    drop(r);
    unpair(&ctx, &publisher, &inv, node).await
}

async fn unpair_node_by_pubkey(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let pubkey = str_arg(&inv, 0, "pubkey")?.to_ascii_lowercase();
    let r = ctx.replica.read().await?;
    let node: Node = r.lookup(Index::NodeByPubkey, &pubkey)?.ok_or_else(|| {
        CallError::new(
            "crossbar.error.no_such_object",
            format!("no node with pubkey {pubkey}"),
        )
    })?;
    drop(r);
    unpair(&ctx, &publisher, &inv, node).await
}

/// The paired node `authid` of the management realm `name`.
async fn node_by_name(
    ctx: &Ctx,
    name: &str,
    authid: &str,
) -> Result<(ManagementRealm, Node), CallError> {
    let mrealm = mrealm_by(ctx, MrealmRef::Name(name)).await?;
    let r = ctx.replica.read().await?;
    let node: Node = r
        .lookup(Index::NodeByAuthid, &format!("{}/{authid}", mrealm.oid))?
        .ok_or_else(|| no_such(format_args!("node {authid:?} in management realm {name:?}")))?;
    Ok((mrealm, node))
}

async fn unpair_node_by_name(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let name = str_arg(&inv, 0, "realm_name")?.to_owned();
    let authid = str_arg(&inv, 1, "authid")?.to_owned();
    let (_, node) = node_by_name(&ctx, &name, &authid).await?;
    unpair(&ctx, &publisher, &inv, node).await
}

async fn get_node_by_name(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let name = str_arg(&inv, 0, "mrealm_name")?.to_owned();
    let authid = str_arg(&inv, 1, "node_name")?.to_owned();
    let (mrealm, node) = node_by_name(&ctx, &name, &authid).await?;
    require_member(&ctx, &inv, &mrealm).await?;
    Ok(record_value(&node))
}

/// Every node the caller may see: those paired to realms it holds a role on, and the
/// unpaired ones it paired last.
async fn list_nodes(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let names = flag_arg(&inv, 0, "return_names")?;
    let caller = caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    let mut nodes: Vec<Node> = r.list("")?;
    if caller.email != "superuser" {
        let held: HashSet<String> = r
            .index_keys(Index::MrealmRoleByUser, &format!("{}/", caller.oid))?
            .into_iter()
            .filter_map(|k| k.split('/').next().map(str::to_owned))
            .collect();
        nodes.retain(|n| match n.mrealm_oid {
            Some(m) => held.contains(&m.to_string()),
            None => n.owner_oid == Some(caller.oid),
        });
    }
    Ok(node_list(nodes, names))
}

async fn list_nodes_in(ctx: &Ctx, inv: &Invocation, by: MrealmRef<'_>) -> Reply {
    let names = flag_arg(inv, 1, "return_names")?;
    let mrealm = mrealm_by(ctx, by).await?;
    require_member(ctx, inv, &mrealm).await?;
    let r = ctx.replica.read().await?;
    let mut nodes = Vec::new();
    for key in r.index_keys(Index::NodeByMrealm, &format!("{}/", mrealm.oid))? {
        if let Some(node) = r.get::<Node>(&key)? {
            nodes.push(node);
        }
    }
    Ok(node_list(nodes, names))
}

async fn list_nodes_by_mrealm(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "mrealm_oid")?;
    list_nodes_in(&ctx, &inv, MrealmRef::Oid(oid)).await
}

async fn list_nodes_by_mrealm_name(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let name = str_arg(&inv, 0, "mrealm_name")?.to_owned();
    list_nodes_in(&ctx, &inv, MrealmRef::Name(&name)).await
}

async fn get_node(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "node_oid")?;
    let node = {
        let r = ctx.replica.read().await?;
        node_of(&r, oid)?
    };
    require_node_access(&ctx, &inv, &node, false).await?;
    Ok(record_value(&node))
}

/// A node's cluster IP: an IPv4 or IPv6 address, as text.
fn valid_cluster_ip(v: &serde_json::Value) -> Result<String, CallError> {
    v.as_str()
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_owned)
        .ok_or_else(|| bad_argument(format!("cluster_ip {v} is not an IP address")))
}

async fn modify_node(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "node_oid")?;
    // The pubkey, realm and authid change only by pairing.
    let delta = delta_arg(
        &inv,
        1,
        "node_delta",
        &["label", "description", "tags", "authextra", "cluster_ip"],
    )?;
    if let Some(ip) = delta.get("cluster_ip").filter(|v| !v.is_null()) {
        valid_cluster_ip(ip)?;
    }
    let node = {
        let r = ctx.replica.read().await?;
        node_of(&r, oid)?
    };
    require_node_access(&ctx, &inv, &node, true).await?;
    let modified = ctx
        .replica
        .propose(Command::Modify {
            kind: Kind::Node,
            key: oid.to_string(),
            delta,
            status_rule: None,
        })
        .await?;
    let modified = to_value(modified);
    let audience = node_audience(&ctx.replica.read().await?, &node)?;
    publisher.publish_to(
        "crossbarfabriccenter.mrealm.on_node_modified",
        vec![modified.clone()],
        &audience,
    );
    Ok(modified)
}

/// Only an unpaired node record is deleted: a paired node is in use by its realm (its
/// session, cluster memberships), so it has to be unpaired first.
async fn delete_node(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "node_oid")?;
    let node = {
        let r = ctx.replica.read().await?;
        node_of(&r, oid)?
    };
    require_node_access(&ctx, &inv, &node, true).await?;
    if let Some(m) = node.mrealm_oid {
        let realm = mrealm_by(&ctx, MrealmRef::Oid(m))
            .await
            .map(|m| m.name)
            .unwrap_or_else(|_| m.to_string());
        return Err(CallError::new(
            DEPENDENT_OBJECTS,
            format!("node {oid} is paired with management realm {realm}; unpair it first"),
        ));
    }
    let deleted = ctx
        .replica
        .propose(Command::Delete {
            kind: Kind::Node,
            key: oid.to_string(),
            cascade: false,
        })
        .await?;
    let deleted = to_value(deleted);
    let audience = node_audience(&ctx.replica.read().await?, &node)?;
    publisher.publish_to(
        "crossbarfabriccenter.mrealm.on_node_deleted",
        vec![deleted.clone()],
        &audience,
    );
    Ok(deleted)
}

/// The node record plus where it stands: `paired`, `mrealm_name` and `online` (a session
/// of it is joined on some replica).
async fn stat_node(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "node_oid")?;
    let node = {
        let r = ctx.replica.read().await?;
        node_of(&r, oid)?
    };
    require_node_access(&ctx, &inv, &node, false).await?;
    let r = ctx.replica.read().await?;
    let mrealm_name = match node.mrealm_oid {
        Some(m) => r.get::<ManagementRealm>(&m.to_string())?.map(|m| m.name),
        None => None,
    };
    let online = r.get::<Presence>(&oid.to_string())?.is_some();
    let mut out = serde_json::to_value(&node).expect("records serialize");
    if let Some(obj) = out.as_object_mut() {
        obj.insert(
            "paired".into(),
            serde_json::Value::from(node.mrealm_oid.is_some()),
        );
        obj.insert("mrealm_name".into(), serde_json::Value::from(mrealm_name));
        obj.insert("online".into(), serde_json::Value::from(online));
    }
    Ok(to_value(out))
}

/// This group's procedures, as (URI, handler) pairs.
pub(super) fn handlers(ctx: &Arc<Ctx>, publisher: &Publisher) -> Vec<(&'static str, Handler)> {
    backends![
        ctx,
        publisher,
        "crossbarfabriccenter.mrealm.";
        pair_node,
        unpair_node,
        unpair_node_by_pubkey,
        unpair_node_by_name,
        get_node,
        get_node_by_name,
        list_nodes,
        list_nodes_by_mrealm,
        list_nodes_by_mrealm_name,
        modify_node,
        delete_node,
        stat_node,
    ]
}
