//! `crossbarfabriccenter.mrealm.routercluster.*` (spec §6.5): router clusters, their member
//! nodes, and the worker groups placed on those nodes. Events go to
//! `crossbarfabriccenter.mrealm.routercluster.on_*`.
//!
//! Starting a cluster moves it to STARTING; the orchestration reconciler (`api/orchestrate`)
//! moves it to RUNNING while all its member nodes are online, DEGRADED otherwise. Its workers
//! belong to the application realms started on its worker groups.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::args::*;
use super::clusters::{self, Family};
use super::errors::*;
use super::objects::*;
use super::reply::*;
use super::route;
use super::scope::Scope;
use crate::clock::now_ns;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{
    Json, RouterCluster, RouterClusterNodeMembership, RouterWorkerGroup,
    RouterWorkerGroupClusterPlacement,
};
use crate::store::{AnyRecord, Command, Index, Kind, Reader};
use crate::wamp::Value;
use crate::wamp::errors::INVALID_ARGUMENT;
use crate::wamp::errors::*;

const PREFIX: &str = "crossbarfabriccenter.mrealm.routercluster.";

/// Bounds of a worker group's scale (cfxdb `RouterWorkerGroup`).
const MAX_SCALE: u64 = 128;

/// Router clusters as a cluster [`Family`]: members have a softlimit and a hardlimit, and
/// application realms use their worker groups.
pub static FAMILY: Family = Family {
    prefix: PREFIX,
    name: "routercluster",
    named: Named {
        kind: Kind::RouterCluster,
        by_name: Index::RouterClusterByName,
        what: "router cluster",
        oid_arg: "routercluster_oid",
        name_arg: "routercluster_name",
    },
    member_kind: Kind::RouterClusterNodeMembership,
    new_cluster: |spec, fixed| {
        build::<RouterCluster>(spec, fixed, INVALID_CONFIGURATION).map(AnyRecord::RouterCluster)
    },
    new_member: |config, fixed| {
        let m: RouterClusterNodeMembership = build(config, fixed, INVALID_ARGUMENT)?;
        if let (Some(soft), Some(hard)) = (m.softlimit, m.hardlimit)
            && (soft < 0 || hard < soft)
        {
            return Err(bad_argument("need 0 <= softlimit <= hardlimit"));
        }
        Ok(AnyRecord::RouterClusterNodeMembership(m))
    },
    used_by_arealms: |s, r, c| {
        let groups = r
            .list::<RouterWorkerGroup>(&format!("{}/{c}/", s.mrealm_oid))?
            .into_iter()
            .map(|g| g.oid.to_string())
            .collect();
        Ok(("workergroup_oid", groups))
    },
};

pub fn handlers(scope: &Arc<Scope>) -> Vec<(String, Handler)> {
    let s = scope;
    let mut all = clusters::handlers(s, &FAMILY);
    all.extend([
        route(s, PREFIX, "stat_routercluster", stat_cluster),
        route(s, PREFIX, "list_routercluster_workergroups", list_groups),
        route(s, PREFIX, "add_routercluster_workergroup", add_group),
        route(s, PREFIX, "remove_routercluster_workergroup", remove_group),
        route(s, PREFIX, "get_routercluster_workergroup", get_group),
        route(
            s,
            PREFIX,
            "get_routercluster_workergroup_by_name",
            get_group_by_name,
        ),
        route(s, PREFIX, "stat_routercluster_workergroup", stat_group),
    ]);
    all
}

fn publish(s: &Scope, topic: &str, v: &Value) {
    s.events
        .publish(&format!("{PREFIX}{topic}"), vec![v.clone()]);
}

fn group_key(s: &Scope, c: &Uuid, g: &Uuid) -> String {
    format!("{}/{c}/{g}", s.mrealm_oid)
}

fn group_in(s: &Scope, r: &Reader, c: &Uuid, g: &Uuid) -> Result<RouterWorkerGroup, CallError> {
    FAMILY.cluster_in(s, r, c)?;
    get(
        r,
        &group_key(s, c, g),
        "router worker group",
        &g.to_string(),
    )
}

fn placements_of(
    s: &Scope,
    r: &Reader,
    g: &Uuid,
) -> Result<Vec<RouterWorkerGroupClusterPlacement>, CallError> {
    r.list(&format!("{}/{g}/", s.mrealm_oid))
        .map_err(CallError::from)
}

// ---- clusters ----------------------------------------------------------------------------

async fn stat_cluster(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "routercluster_oid")?;
    let r = reader(&s).await?;
    let mut out = FAMILY.cluster_in(&s, &r, &c)?;
    let inside = format!("{}/{c}/", s.mrealm_oid);
    let members = r.list::<RouterClusterNodeMembership>(&inside)?;
    let mut online_nodes = 0;
    for m in &members {
        if online(&r, &m.node_oid)? {
            online_nodes += 1;
        }
    }
    let groups = r.list::<RouterWorkerGroup>(&inside)?;
    let mut workers = 0;
    for g in &groups {
        workers += placements_of(&s, &r, &g.oid)?.len();
    }
    out["stats"] = json!({
        "nodes": members.len(),
        "nodes_online": online_nodes,
        "workergroups": groups.len(),
        "workers": workers,
    });
    Ok(wire(out))
}

// ---- member nodes ------------------------------------------------------------------------

// ---- worker groups -----------------------------------------------------------------------

async fn list_groups(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "routercluster_oid")?;
    let names = flag_arg(&inv, 1, "return_names")?;
    let status = opt_str_arg(&inv, 2, "filter_by_status")?;
    let r = reader(&s).await?;
    FAMILY.cluster_in(&s, &r, &c)?;
    let items = r
        .list::<RouterWorkerGroup>(&format!("{}/{c}/", s.mrealm_oid))?
        .into_iter()
        .filter(|g| {
            status
                .as_deref()
                .is_none_or(|want| g.status.eq_ignore_ascii_case(want))
        })
        .map(|g| (g.oid.to_string(), g.name))
        .collect();
    Ok(oids_or_names(items, names))
}

/// A member node of a router cluster as placement sees it: (node, softlimit, hardlimit).
type Member = (Uuid, Option<i64>, Option<i64>);

/// Chooses a node for each of `scale` workers: the least loaded member (fewest workers of
/// this cluster placed on it, ties by oid) that is below its hardlimit, preferring members
/// still below their softlimit (the reference put them all on one node).
fn place(
    members: &[Member],
    mut load: HashMap<Uuid, i64>,
    scale: u64,
) -> Result<Vec<Uuid>, String> {
    if members.is_empty() {
        return Err("the router cluster has no nodes to place workers on".into());
    }
    let mut out = Vec::new();
    for _ in 0..scale {
        let pick = members
            .iter()
            .map(|(n, soft, hard)| (*load.get(n).unwrap_or(&0), *n, *soft, *hard))
            .filter(|(l, _, _, hard)| hard.is_none_or(|h| *l < h))
            .min_by_key(|(l, n, soft, _)| (soft.is_some_and(|s| *l >= s), *l, *n))
            .map(|(_, n, _, _)| n)
            .ok_or("every node of the router cluster is at its hardlimit")?;
        *load.entry(pick).or_default() += 1;
        out.push(pick);
    }
    Ok(out)
}

async fn add_group(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "routercluster_oid")?;
    let spec = opt_dict_arg(&inv, 1, "workergroup")?;
    let oid = Uuid::new_v4();
    let name = match spec.get("name") {
        None | Some(Json::Null) => format!("cwg_{}", &oid.to_string()[..8]),
        Some(Json::String(n)) if valid_group_name(n) => n.clone(),
        Some(other) => {
            return Err(CallError::new(
                INVALID_CONFIGURATION,
                format!(
                    "worker group name {other} does not match ^[a-z][a-z0-9_]{{0,59}}$ (its \
                     workers are named <name>_<n>, and worker ids must match Crossbar's \
                     ^[a-z][a-z0-9_]{{2,63}}$)"
                ),
            ));
        }
    };
    let scale = match spec.get("scale") {
        None | Some(Json::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_SCALE).contains(&n) => n,
            _ => {
                return Err(bad_argument(format!(
                    "scale must be 1..{MAX_SCALE}, not {v}"
                )));
            }
        },
    };
    let nodes = {
        let r = reader(&s).await?;
        FAMILY.cluster_in(&s, &r, &c)?;
        let members: Vec<Member> = r
            .list::<RouterClusterNodeMembership>(&format!("{}/{c}/", s.mrealm_oid))?
            .into_iter()
            .map(|m| (m.node_oid, m.softlimit, m.hardlimit))
            .collect();
        let mut load: HashMap<Uuid, i64> = HashMap::new();
        for p in r.list::<RouterWorkerGroupClusterPlacement>(&s.key_prefix())? {
            if p.cluster_oid == c {
                *load.entry(p.node_oid).or_default() += 1;
            }
        }
        place(&members, load, scale).map_err(bad_argument)?
    };
    let changed = now_ns();
    let group: RouterWorkerGroup = build(
        spec,
        json!({
            "oid": oid,
            "mrealm_oid": s.mrealm_oid,
            "cluster_oid": c,
            "name": name,
            "scale": scale,
            "status": "STOPPED",
            "changed": changed,
        }),
        INVALID_ARGUMENT,
    )?;
    let placements = nodes
        .into_iter()
        .enumerate()
        .map(|(i, node_oid)| RouterWorkerGroupClusterPlacement {
            oid: Uuid::new_v4(),
            mrealm_oid: s.mrealm_oid,
            worker_group_oid: oid,
            cluster_oid: c,
            node_oid,
            // 1-based, as the reference names them.
            worker_name: format!("{}_{}", group.name, i + 1),
            status: "STOPPED".into(),
            changed,
            tcp_listening_port: None,
        })
        .collect();
    let added = wire(propose(&s, Command::AddWorkerGroup { group, placements }).await?);
    publish(&s, "on_workergroup_added", &added);
    Ok(added)
}

/// `^[a-z][a-z0-9_]{0,59}$`: a worker group's workers are `<name>_<1..scale>` on the nodes,
/// and those must be Crossbar config ids (`^[a-z][a-z0-9_]{2,63}$`). The reference checks
/// nothing; `g1` is a fine name (its workers are `g1_1`, `g1_2`).
fn valid_group_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 60
}

async fn remove_group(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = oid_arg(&inv, 0, "routercluster_oid")?;
    let g = oid_arg(&inv, 1, "workergroup_oid")?;
    {
        let r = reader(&s).await?;
        group_in(&s, &r, &c, &g)?;
        check_unused(&s, &r, "workergroup_oid", &[g.to_string()])?;
    }
    let removed = wire(
        propose(
            &s,
            Command::Delete {
                kind: Kind::RouterWorkerGroup,
                key: group_key(&s, &c, &g),
                cascade: false,
            },
        )
        .await?,
    );
    publish(&s, "on_workergroup_removed", &removed);
    Ok(removed)
}

async fn get_group(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "routercluster_oid")?;
    let g = oid_arg(&inv, 1, "workergroup_oid")?;
    let r = reader(&s).await?;
    Ok(wire_record(&group_in(&s, &r, &c, &g)?))
}

async fn get_group_by_name(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let cluster_name = str_arg(&inv, 0, "routercluster_name")?.to_owned();
    let group_name = str_arg(&inv, 1, "workergroup_name")?.to_owned();
    let r = reader(&s).await?;
    let cluster = r
        .lookup::<RouterCluster>(Index::RouterClusterByName, &s.key(&cluster_name))?
        .ok_or_else(|| no_such_object("router cluster named", format!("{cluster_name:?}")))?;
    r.lookup::<RouterWorkerGroup>(
        Index::WorkerGroupByName,
        &format!("{}/{}/{group_name}", s.mrealm_oid, cluster.oid),
    )?
    .map(|g| wire_record(&g))
    .ok_or_else(|| no_such_object("router worker group named", format!("{group_name:?}")))
}

async fn stat_group(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = oid_arg(&inv, 0, "routercluster_oid")?;
    let g = oid_arg(&inv, 1, "workergroup_oid")?;
    let r = reader(&s).await?;
    let group = group_in(&s, &r, &c, &g)?;
    let placements = placements_of(&s, &r, &g)?;
    let mut nodes: Vec<Uuid> = placements.iter().map(|p| p.node_oid).collect();
    nodes.sort();
    nodes.dedup();
    let mut online_nodes = 0;
    for n in &nodes {
        if online(&r, n)? {
            online_nodes += 1;
        }
    }
    let mut out = serde_json::to_value(&group).unwrap_or(Json::Null);
    out["stats"] = json!({
        "workers": placements.len(),
        "nodes": nodes.len(),
        "nodes_online": online_nodes,
    });
    // Per placement, what the last orchestration pass of each application realm started on
    // this group found there.
    let arealms: Vec<crate::store::model::ApplicationRealm> = r
        .list::<crate::store::model::ApplicationRealm>(&s.key_prefix())?
        .into_iter()
        .filter(|a| a.workergroup_oid == Some(g) && a.status != "STOPPED")
        .collect();
    out["placements"] = Json::Array(
        placements
            .iter()
            .map(|p| {
                let mut row = super::to_json(&wire_record(p));
                let realms: serde_json::Map<String, Json> = arealms
                    .iter()
                    .map(|a| {
                        let found = a
                            .extra
                            .get("orchestration")
                            .and_then(|o| o.get("nodes"))
                            .and_then(|n| n.get(p.node_oid.to_string()))
                            .and_then(|n| n.get("workers"))
                            .and_then(|w| w.get(&p.worker_name))
                            .cloned()
                            .unwrap_or(json!({"state": "pending"}));
                        (a.name.clone(), found)
                    })
                    .collect();
                row["arealms"] = Json::Object(realms);
                row
            })
            .collect(),
    );
    Ok(wire(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn workers_go_to_the_least_loaded_nodes() {
        let members = [
            (node(1), None, None),
            (node(2), None, None),
            (node(3), None, None),
        ];
        let load = HashMap::from([(node(1), 2), (node(2), 0)]);
        let picked = place(&members, load, 4).expect("placed");
        assert_eq!(picked, vec![node(2), node(3), node(2), node(3)]);
    }

    #[test]
    fn hardlimits_are_respected() {
        let members = [(node(1), None, Some(1)), (node(2), None, Some(2))];
        let picked = place(&members, HashMap::new(), 3).expect("placed");
        assert_eq!(picked, vec![node(1), node(2), node(2)]);
        assert!(place(&members, HashMap::new(), 4).is_err());
    }

    #[test]
    fn softlimits_are_filled_before_any_node_goes_past_one() {
        // node 1 takes 1 before it is "full", node 2 takes 3.
        let members = [(node(1), Some(1), None), (node(2), Some(3), None)];
        let picked = place(&members, HashMap::new(), 5).expect("placed");
        assert_eq!(picked, vec![node(1), node(2), node(2), node(2), node(1)]);
    }

    #[test]
    fn group_names_make_valid_worker_ids() {
        assert!(valid_group_name("g1"));
        assert!(valid_group_name("g"));
        assert!(valid_group_name(&"a".repeat(60)));
        assert!(!valid_group_name(&"a".repeat(61)));
        assert!(!valid_group_name("1g"));
        assert!(!valid_group_name("G1"));
        assert!(!valid_group_name(""));
    }

    #[test]
    fn no_members_no_placement() {
        assert!(place(&[], HashMap::new(), 1).is_err());
    }
}
