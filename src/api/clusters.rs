//! What router clusters and web clusters share (spec §6.5, §6.6): listing, reading,
//! creating, deleting, starting and stopping a cluster, and its member nodes. A [`Family`]
//! names what differs: URIs, record kinds, how a record is built from the caller's input, and
//! what an application realm uses of it.
//!
//! One permission rule for both: reads are for everyone on the realm, changes for owners and
//! admins, and deleting or starting a cluster for owners only (the reference's rule for
//! router clusters; it had none for web clusters).

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::args::{dict_arg, flag_arg, node_status_filter, oid_arg, opt_dict_arg};
use super::errors::no_such_object;
use super::objects::*;
use super::reply::{transition, wire};
use super::route;
use super::scope::Scope;
use super::to_value;
use crate::clock::now_ns;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{Extra, Json};
use crate::store::{AnyRecord, Command, Kind, Reader};
use crate::wamp::Value;
use crate::wamp::errors::INVALID_CONFIGURATION;

/// The application-realm field that refers to a cluster's parts, and the oids of the parts
/// of cluster `c` (the cluster itself or its worker groups).
pub type UsedByArealms =
    fn(&Scope, &Reader, &Uuid) -> Result<(&'static str, Vec<String>), CallError>;

/// One kind of cluster.
pub struct Family {
    /// Procedure and topic prefix, e.g. `crossbarfabriccenter.mrealm.routercluster.`.
    pub prefix: &'static str,
    /// In procedure, topic and argument names: `routercluster`, `webcluster`.
    pub name: &'static str,
    /// The cluster as a named object: kind, name index, messages and arguments.
    pub named: Named,
    pub member_kind: Kind,
    /// A cluster record from the caller's spec and the fields the master decides.
    pub new_cluster: fn(Extra, Json) -> Result<AnyRecord, CallError>,
    /// A membership record from the caller's config and the fields the master decides,
    /// checked against the family's own rules.
    pub new_member: fn(Extra, Json) -> Result<AnyRecord, CallError>,
    /// What application realms use of a cluster (deleting it is refused while they run).
    pub used_by_arealms: UsedByArealms,
}

impl Family {
    fn publish(&self, s: &Scope, event: &str, v: &Value) {
        s.events.publish(
            &format!("{}on_{}_{event}", self.prefix, self.name),
            vec![v.clone()],
        );
    }

    fn oid(&self, inv: &Invocation) -> Result<Uuid, CallError> {
        oid_arg(inv, 0, &format!("{}_oid", self.name))
    }

    /// The cluster `c` of this realm, as stored.
    pub fn cluster_in(&self, s: &Scope, r: &Reader, c: &Uuid) -> Result<Json, CallError> {
        self.named.in_realm(s, r, c)
    }
}

/// The procedures every family has, registered under its names.
pub fn handlers(scope: &Arc<Scope>, f: &'static Family) -> Vec<(String, Handler)> {
    let n = f.name;
    let p = f.prefix;
    let mut all = f.named.routes(scope, p, &format!("{n}s"), n);
    all.extend([
        route(scope, p, &format!("create_{n}"), move |s, i| {
            create(f, s, i)
        }),
        route(scope, p, &format!("delete_{n}"), move |s, i| {
            delete(f, s, i)
        }),
        route(scope, p, &format!("start_{n}"), move |s, i| start(f, s, i)),
        route(scope, p, &format!("stop_{n}"), move |s, i| {
            stop_cluster(f, s, i)
        }),
        route(scope, p, &format!("list_{n}_nodes"), move |s, i| {
            list_nodes(f, s, i)
        }),
        route(scope, p, &format!("add_{n}_node"), move |s, i| {
            add_node(f, s, i)
        }),
        route(scope, p, &format!("remove_{n}_node"), move |s, i| {
            remove_node(f, s, i)
        }),
        route(scope, p, &format!("get_{n}_node"), move |s, i| {
            get_node(f, s, i)
        }),
    ]);
    all
}

fn member_key(s: &Scope, c: &Uuid, n: &Uuid) -> String {
    format!("{}/{c}/{n}", s.mrealm_oid)
}

async fn create(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let spec = dict_arg(&inv, 0, f.name)?;
    match spec.get("name").and_then(Json::as_str) {
        Some(n) if valid_config_id(n) => {}
        other => {
            return Err(CallError::new(
                INVALID_CONFIGURATION,
                format!(
                    "{} name {other:?} does not match ^[a-z][a-z0-9_]{{2,63}}$",
                    f.named.what
                ),
            ));
        }
    }
    let owner = caller_oid(&s, &inv).await?;
    let record = (f.new_cluster)(
        spec,
        json!({
            "oid": Uuid::new_v4(),
            "mrealm_oid": s.mrealm_oid,
            "status": "STOPPED",
            "owner_oid": owner,
            "changed": now_ns(),
        }),
    )?;
    let created = wire(propose(&s, Command::Insert { record }).await?);
    f.publish(&s, "created", &created);
    Ok(created)
}

async fn delete(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_owner(&inv)?;
    let c = f.oid(&inv)?;
    {
        let r = reader(&s).await?;
        f.cluster_in(&s, &r, &c)?;
        let (field, parts) = (f.used_by_arealms)(&s, &r, &c)?;
        check_unused(&s, &r, field, &parts)?;
    }
    // Memberships and what hangs below the cluster go with it; a cluster that is not
    // stopped is refused by the store.
    let deleted = wire(
        propose(
            &s,
            Command::Delete {
                kind: f.named.kind,
                key: s.key(c),
                cascade: false,
            },
        )
        .await?,
    );
    f.publish(&s, "deleted", &deleted);
    Ok(deleted)
}

async fn start(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_owner(&inv)?;
    let c = f.oid(&inv)?;
    let started = set_status(
        &s,
        f.named.kind,
        &s.key(c),
        "STARTING",
        starting_from(),
        Default::default(),
    )
    .await?;
    let out = to_value(transition(&started, Some(&inv)));
    f.publish(&s, "starting", &out);
    Ok(out)
}

async fn stop_cluster(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = f.oid(&inv)?;
    // The reference refuses a wrong state of a router cluster with `cannot_start`;
    // `cannot_stop` is what every other stop answers, and what the refusal means.
    // STOPPED (and `on_*_stopped`) follow once the workers are gone from the nodes.
    let stopping = stop(&s, f.named.kind, &s.key(c)).await?;
    let out = to_value(transition(&stopping, Some(&inv)));
    f.publish(&s, "stopping", &out);
    Ok(out)
}

async fn list_nodes(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = f.oid(&inv)?;
    let names = flag_arg(&inv, 1, "return_names")?;
    let filter = node_status_filter(&inv, 2)?;
    let r = reader(&s).await?;
    f.cluster_in(&s, &r, &c)?;
    let nodes = r
        .list_json(f.member_kind, &format!("{}/{c}/", s.mrealm_oid))?
        .into_iter()
        .filter_map(|(_, m)| Uuid::parse_str(m.get("node_oid")?.as_str()?).ok())
        .collect();
    member_nodes(&s, &r, nodes, names, filter)
}

async fn add_node(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = f.oid(&inv)?;
    let n = oid_arg(&inv, 1, "node_oid")?;
    let config = opt_dict_arg(&inv, 2, "config")?;
    {
        let r = reader(&s).await?;
        f.cluster_in(&s, &r, &c)?;
        paired_node(&s, &r, &n)?;
    }
    let record = (f.new_member)(
        config,
        json!({"mrealm_oid": s.mrealm_oid, "cluster_oid": c, "node_oid": n}),
    )?;
    let added = wire(propose(&s, Command::Insert { record }).await?);
    f.publish(&s, "node_added", &added);
    Ok(added)
}

async fn remove_node(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let c = f.oid(&inv)?;
    let n = oid_arg(&inv, 1, "node_oid")?;
    // The store refuses while workers of this cluster are placed on the node.
    let removed = wire(
        propose(
            &s,
            Command::Delete {
                kind: f.member_kind,
                key: member_key(&s, &c, &n),
                cascade: false,
            },
        )
        .await?,
    );
    f.publish(&s, "node_removed", &removed);
    Ok(removed)
}

async fn get_node(f: &Family, s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let c = f.oid(&inv)?;
    let n = oid_arg(&inv, 1, "node_oid")?;
    let r = reader(&s).await?;
    f.cluster_in(&s, &r, &c)?;
    r.get_json(f.member_kind, &member_key(&s, &c, &n))?
        .map(wire)
        .ok_or_else(|| no_such_object(&format!("{} node", f.named.what), n))
}
