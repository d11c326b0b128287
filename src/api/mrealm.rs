//! `crossbarfabriccenter.mrealm.*` on the global realm: the catalogue of management realms,
//! the roles users hold on them, and the nodes paired to them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::common::{
    DEPENDENT_OBJECTS, NOT_AUTHORIZED, backend, delta_arg, flag_arg, no_such, record_value,
    role_names, roles_arg, sorted_list, store_failed,
};
use super::{Ctx, Publisher, bad_argument, handler, oid_arg, propose_failed, read_failed, str_arg};
use super::{to_json, to_value};
use crate::replica::Replica;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{
    ManagementRealm, Node, Oid, Presence, ROLE_ADMIN, ROLE_GUEST, ROLE_OWNER, ROLE_USER, User,
    UserMrealmRole,
};
use crate::store::{AnyRecord, Command, Index, Kind, Reader};
use crate::wamp::Value;

/// Names the reference keeps for itself (`master/mrealm/mrealm.py`).
const PROTECTED: [&str; 15] = [
    "io.crossbar",
    "com.crossbario",
    "de.crossbario",
    "crossbar",
    "crossbar-wamp",
    "crossbarfabric",
    "crossbarfabric-wamp",
    "crossbarfabriccenter",
    "crossbario",
    "fabric",
    "autobahn",
    "wamp",
    "ws.wamp",
    "io.wamp",
    "com.crossbario.fabric",
];

/// `^[A-Za-z][A-Za-z0-9_\-@\.]{2,254}$` and not a protected name or below one.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_-@.".contains(c));
    let len_ok = (3..=255).contains(&name.len());
    let protected = PROTECTED
        .iter()
        .any(|p| name == *p || name.starts_with(&format!("{p}.")));
    first_ok && rest_ok && len_ok && !protected
}

pub(super) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn no_such_mrealm(what: impl std::fmt::Display) -> CallError {
    CallError::new(
        "crossbar.error.no_such_object",
        format!("no management realm {what}"),
    )
}

/// The caller's user record: the superuser gets one (e-mail `superuser`) on first use.
pub(super) async fn caller_user(replica: &Replica, inv: &Invocation) -> Result<User, CallError> {
    if inv.caller_authrole() != Some("user") {
        return Err(CallError::new(
            crate::wamp::errors::NOT_AUTHORIZED,
            format!("not authorized for role {:?}", inv.caller_authrole()),
        ));
    }
    let email = inv.caller_authid().unwrap_or_default().to_owned();
    let r = replica.read().await.map_err(read_failed)?;
    if let Some(u) = r
        .lookup::<User>(Index::UserByEmail, &email)
        .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?
    {
        return Ok(u);
    }
    drop(r);
    if email != "superuser" {
        return Err(CallError::new(
            "crossbar.error.no_such_object",
            format!("no user {email:?}"),
        ));
    }
    let user = User {
        oid: uuid::Uuid::new_v4(),
        label: None,
        description: None,
        tags: None,
        email: email.clone(),
        registered: now_micros(),
        pubkey: None,
    };
    match replica
        .propose(Command::Insert {
            record: AnyRecord::User(user.clone()),
        })
        .await
    {
        Ok(_) => Ok(user),
        // Created by a concurrent call: use that one.
        Err(crate::replica::ProposeError::Refused(_)) => {
            let r = replica.read().await.map_err(read_failed)?;
            r.lookup::<User>(Index::UserByEmail, &email)
                .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?
                .ok_or_else(|| CallError::new("crossbar.error.no_such_object", "no superuser"))
        }
        Err(e) => Err(propose_failed(e)),
    }
}

/// The caller, if it may manage `mrealm`: the superuser, or a user holding OWNER on it.
async fn require_owner(
    replica: &Replica,
    inv: &Invocation,
    mrealm: &ManagementRealm,
) -> Result<User, CallError> {
    let user = caller_user(replica, inv).await?;
    if user.email == "superuser" {
        return Ok(user);
    }
    let r = replica.read().await.map_err(read_failed)?;
    let roles: Option<UserMrealmRole> = r
        .get(&format!("{}/{}", mrealm.oid, user.oid))
        .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?;
    if roles.is_some_and(|r| r.roles.contains(&ROLE_OWNER)) {
        Ok(user)
    } else {
        Err(CallError::new(
            "fabric.not-authorized",
            format!("{} is not an owner of {}", user.email, mrealm.name),
        ))
    }
}

async fn mrealm_by(ctx: &Ctx, by: MrealmRef<'_>) -> Result<ManagementRealm, CallError> {
    let r = ctx.replica.read().await.map_err(read_failed)?;
    let found: Option<ManagementRealm> = match by {
        MrealmRef::Oid(oid) => r.get(&oid.to_string()),
        MrealmRef::Name(name) => r.lookup(Index::MrealmByName, name),
    }
    .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?;
    found.ok_or_else(|| match by {
        MrealmRef::Oid(oid) => no_such_mrealm(oid),
        MrealmRef::Name(name) => no_such_mrealm(format!("{name:?}")),
    })
}

#[derive(Clone, Copy)]
enum MrealmRef<'a> {
    Oid(uuid::Uuid),
    Name(&'a str),
}

fn cascade_arg(inv: &Invocation) -> bool {
    inv.arg(1)
        .or_else(|| inv.kwarg("cascade"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

async fn delete_mrealm(
    ctx: &Ctx,
    publisher: &Publisher,
    inv: &Invocation,
    by: MrealmRef<'_>,
) -> Result<Value, CallError> {
    let mrealm = mrealm_by(ctx, by).await?;
    let caller = require_owner(&ctx.replica, inv, &mrealm).await?;
    let deleted = ctx
        .replica
        .propose(Command::Delete {
            kind: crate::store::Kind::ManagementRealm,
            key: mrealm.oid.to_string(),
            cascade: cascade_arg(inv),
        })
        .await
        .map_err(propose_failed)?;
    let mut event = deleted.clone();
    if let Some(obj) = event.as_object_mut() {
        obj.insert("deleted".into(), serde_json::Value::from(now_micros()));
        obj.insert(
            "caller".into(),
            serde_json::Value::from(caller.oid.to_string()),
        );
    }
    let _ = ctx.realms.reconcile().await;
    let event = to_value(event);
    publisher.publish(
        "crossbarfabriccenter.mrealm.on_realm_deleted",
        vec![event.clone()],
    );
    Ok(event)
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
    let paired = ctx
        .replica
        .propose(Command::UnpairNode { oid: node.oid })
        .await
        .map_err(propose_failed)?;
    // Close the node's session here at once; other replicas do it when they apply.
    let killed = match ctx.realms_router_realm(&mrealm.name) {
        Some(realm) => match paired.get("authid").and_then(|a| a.as_str()) {
            Some(authid) => {
                realm.kill_by_authid(authid, "wamp.close.auth-changed", "the node was unpaired")
            }
            None => Vec::new(),
        },
        None => Vec::new(),
    };
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
    publisher.publish(
        "crossbarfabriccenter.mrealm.on_node_unpaired",
        vec![out.clone()],
    );
    Ok(out)
}

pub fn handlers(ctx: &Arc<Ctx>, publisher: &Publisher) -> Vec<(&'static str, Handler)> {
    let list = {
        let ctx = ctx.clone();
        handler(move |inv| {
            let ctx = ctx.clone();
            async move {
                let names = inv
                    .arg(0)
                    .or_else(|| inv.kwarg("return_names"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let superuser = inv.caller_authid() == Some("superuser");
                ctx.replica.linearize().await.map_err(read_failed)?;
                let runtime = |e: crate::store::StoreError| {
                    CallError::new("wamp.error.runtime_error", e.to_string())
                };
                let listing = ctx.mrealms.get(&ctx.replica).map_err(runtime)?;
                if superuser {
                    return Ok(if names {
                        listing.names.clone()
                    } else {
                        listing.oids.clone()
                    });
                }
                let r = ctx.replica.reader().map_err(runtime)?;
                let mut realms = listing.realms.clone();
                {
                    // Only the realms the caller holds a role on.
                    let email = inv.caller_authid().unwrap_or_default();
                    let user: Option<User> =
                        r.lookup(Index::UserByEmail, email).map_err(runtime)?;
                    let held: std::collections::HashSet<String> = match user {
                        Some(u) => r
                            .index_keys(Index::MrealmRoleByUser, &format!("{}/", u.oid))
                            .map_err(runtime)?
                            .into_iter()
                            .filter_map(|k| k.split('/').next().map(str::to_owned))
                            .collect(),
                        None => Default::default(),
                    };
                    realms.retain(|m| held.contains(&m.oid.to_string()));
                }
                let mut out: Vec<String> = realms
                    .into_iter()
                    .map(|m| if names { m.name } else { m.oid.to_string() })
                    .collect();
                out.sort();
                Ok(Value::List(out.into_iter().map(Value::from).collect()))
            }
        })
    };
    let get = {
        let ctx = ctx.clone();
        handler(move |inv| {
            let ctx = ctx.clone();
            async move {
                let oid = oid_arg(&inv, 0, "mrealm_oid")?;
                let r = ctx.replica.read().await.map_err(read_failed)?;
                let m: ManagementRealm = r
                    .get(&oid.to_string())
                    .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?
                    .ok_or_else(|| no_such_mrealm(oid))?;
                Ok(to_value(
                    serde_json::to_value(m).expect("records serialize"),
                ))
            }
        })
    };
    let get_by_name = {
        let ctx = ctx.clone();
        handler(move |inv| {
            let ctx = ctx.clone();
            async move {
                let name = str_arg(&inv, 0, "name")?.to_owned();
                let r = ctx.replica.read().await.map_err(read_failed)?;
                let m: ManagementRealm = r
                    .lookup(Index::MrealmByName, &name)
                    .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?
                    .ok_or_else(|| no_such_mrealm(format!("{name:?}")))?;
                Ok(to_value(
                    serde_json::to_value(m).expect("records serialize"),
                ))
            }
        })
    };
    let create = {
        let ctx = ctx.clone();
        let publisher = publisher.clone();
        handler(move |inv| {
            let ctx = ctx.clone();
            let publisher = publisher.clone();
            async move {
                let spec = match inv.arg(0).or_else(|| inv.kwarg("mrealm")) {
                    Some(v @ Value::Dict(_)) => to_json(v),
                    _ => return Err(bad_argument("create_mrealm needs a dict {name, …}")),
                };
                let name = spec
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_owned();
                if !valid_name(&name) {
                    return Err(CallError::new(
                        "fabric.invalid-realm",
                        format!("invalid management realm name {name:?}"),
                    ));
                }
                let owner = caller_user(&ctx.replica, &inv).await?;
                let text = |k: &str| spec.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                let tags = spec.get("tags").and_then(|t| t.as_array()).map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                });
                let mrealm = ManagementRealm {
                    oid: uuid::Uuid::new_v4(),
                    label: text("label"),
                    description: text("description"),
                    tags,
                    name,
                    created: now_micros(),
                    owner: owner.oid,
                    cf_router_worker: None,
                    cf_container_worker: None,
                };
                let created = ctx
                    .replica
                    .propose(Command::Insert {
                        record: AnyRecord::ManagementRealm(mrealm.clone()),
                    })
                    .await
                    .map_err(propose_failed)?;
                ctx.replica
                    .propose(Command::Upsert {
                        record: AnyRecord::UserMrealmRole(UserMrealmRole {
                            user_oid: owner.oid,
                            mrealm_oid: mrealm.oid,
                            roles: vec![ROLE_OWNER, ROLE_ADMIN, ROLE_USER, ROLE_GUEST],
                        }),
                    })
                    .await
                    .map_err(propose_failed)?;
                let _ = ctx.realms.reconcile().await;
                let created = to_value(created);
                publisher.publish(
                    "crossbarfabriccenter.mrealm.on_mrealm_created",
                    vec![created.clone()],
                );
                Ok(created)
            }
        })
    };
    let delete = {
        let (ctx, publisher) = (ctx.clone(), publisher.clone());
        handler(move |inv| {
            let (ctx, publisher) = (ctx.clone(), publisher.clone());
            async move {
                let oid = oid_arg(&inv, 0, "mrealm_oid")?;
                delete_mrealm(&ctx, &publisher, &inv, MrealmRef::Oid(oid)).await
            }
        })
    };
    let delete_by_name = {
        let (ctx, publisher) = (ctx.clone(), publisher.clone());
        handler(move |inv| {
            let (ctx, publisher) = (ctx.clone(), publisher.clone());
            async move {
                let name = str_arg(&inv, 0, "name")?.to_owned();
                delete_mrealm(&ctx, &publisher, &inv, MrealmRef::Name(&name)).await
            }
        })
    };
    let pair = {
        let (ctx, publisher) = (ctx.clone(), publisher.clone());
        handler(move |inv| {
            let (ctx, publisher) = (ctx.clone(), publisher.clone());
            async move {
                let pubkey = str_arg(&inv, 0, "pubkey")?.to_ascii_lowercase();
                if crate::auth::cryptosign::parse_pubkey(&pubkey).is_none() {
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
                    cluster_ip: None,
                    mrealm_oid: Some(mrealm.oid),
                    authid: Some(authid),
                    authextra,
                };
                let paired = ctx
                    .replica
                    .propose(Command::PairNode { node })
                    .await
                    .map_err(propose_failed)?;
                let paired = to_value(paired);
                publisher.publish(
                    "crossbarfabriccenter.mrealm.on_node_paired",
                    vec![paired.clone()],
                );
                Ok(paired)
            }
        })
    };
    let unpair_by_oid = {
        let (ctx, publisher) = (ctx.clone(), publisher.clone());
        handler(move |inv| {
            let (ctx, publisher) = (ctx.clone(), publisher.clone());
            async move {
                let oid = oid_arg(&inv, 0, "node_oid")?;
                let r = ctx.replica.read().await.map_err(read_failed)?;
                let node: Node = r
                    .get(&oid.to_string())
                    .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?
                    .ok_or_else(|| {
                        CallError::new("crossbar.error.no_such_object", format!("no node {oid}"))
                    })?;
                drop(r);
                unpair(&ctx, &publisher, &inv, node).await
            }
        })
    };
    let unpair_by_pubkey = {
        let (ctx, publisher) = (ctx.clone(), publisher.clone());
        handler(move |inv| {
            let (ctx, publisher) = (ctx.clone(), publisher.clone());
            async move {
                let pubkey = str_arg(&inv, 0, "pubkey")?.to_ascii_lowercase();
                let r = ctx.replica.read().await.map_err(read_failed)?;
                let node: Node = r
                    .lookup(Index::NodeByPubkey, &pubkey)
                    .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))?
                    .ok_or_else(|| {
                        CallError::new(
                            "crossbar.error.no_such_object",
                            format!("no node with pubkey {pubkey}"),
                        )
                    })?;
                drop(r);
                unpair(&ctx, &publisher, &inv, node).await
            }
        })
    };
    let mut all = vec![
        ("crossbarfabriccenter.mrealm.delete_mrealm", delete),
        (
            "crossbarfabriccenter.mrealm.delete_mrealm_by_name",
            delete_by_name,
        ),
        ("crossbarfabriccenter.mrealm.pair_node", pair),
        ("crossbarfabriccenter.mrealm.unpair_node", unpair_by_oid),
        (
            "crossbarfabriccenter.mrealm.unpair_node_by_pubkey",
            unpair_by_pubkey,
        ),
        ("crossbarfabriccenter.mrealm.list_mrealms", list),
        ("crossbarfabriccenter.mrealm.get_mrealm", get),
        (
            "crossbarfabriccenter.mrealm.get_mrealm_by_name",
            get_by_name,
        ),
        ("crossbarfabriccenter.mrealm.create_mrealm", create),
    ];
    all.extend(more_handlers(ctx, publisher));
    all
}

// ---- management realms: changes and roles, nodes -----------------------------------------

type Reply = Result<Value, CallError>;

fn mrealm_roles(r: &Reader, mrealm: Oid, user: Oid) -> Result<Vec<u8>, CallError> {
    Ok(r.get::<UserMrealmRole>(&format!("{mrealm}/{user}"))
        .map_err(store_failed)?
        .map(|x| x.roles)
        .unwrap_or_default())
}

/// The caller, if it may look into `mrealm`: the superuser or a user holding any role on it.
async fn require_member(
    ctx: &Ctx,
    inv: &Invocation,
    mrealm: &ManagementRealm,
) -> Result<User, CallError> {
    let user = caller_user(&ctx.replica, inv).await?;
    if user.email == "superuser" {
        return Ok(user);
    }
    let r = ctx.replica.read().await.map_err(read_failed)?;
    if mrealm_roles(&r, mrealm.oid, user.oid)?.is_empty() {
        Err(CallError::new(
            NOT_AUTHORIZED,
            format!("{} holds no role on {}", user.email, mrealm.name),
        ))
    } else {
        Ok(user)
    }
}

fn node_of(r: &Reader, oid: Oid) -> Result<Node, CallError> {
    r.get(&oid.to_string())
        .map_err(store_failed)?
        .ok_or_else(|| no_such(format_args!("node {oid}")))
}

/// Who may see (`manage == false`) or change (`manage == true`) a node: for a paired node a
/// member (an owner) of its management realm, for an unpaired one the user who paired it
/// last; the superuser always.
async fn require_node_access(
    ctx: &Ctx,
    inv: &Invocation,
    node: &Node,
    manage: bool,
) -> Result<User, CallError> {
    match node.mrealm_oid {
        Some(m) => {
            let mrealm = mrealm_by(ctx, MrealmRef::Oid(m)).await?;
            if manage {
                require_owner(&ctx.replica, inv, &mrealm).await
            } else {
                require_member(ctx, inv, &mrealm).await
            }
        }
        None => {
            let user = caller_user(&ctx.replica, inv).await?;
            if user.email == "superuser" || node.owner_oid == Some(user.oid) {
                Ok(user)
            } else {
                Err(CallError::new(
                    NOT_AUTHORIZED,
                    format!("{} does not own node {}", user.email, node.oid),
                ))
            }
        }
    }
}

/// Node oids, or (with `return_names`) the authids of those that are paired.
fn node_list(nodes: Vec<Node>, names: bool) -> Value {
    sorted_list(
        nodes
            .into_iter()
            .filter_map(|n| {
                if names {
                    n.authid
                } else {
                    Some(n.oid.to_string())
                }
            })
            .collect(),
    )
}

async fn modify_mrealm(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "mrealm_oid")?;
    let mut delta = delta_arg(
        &inv,
        1,
        "mrealm_delta",
        &["label", "description", "tags", "name"],
    )?;
    let mrealm = mrealm_by(&ctx, MrealmRef::Oid(oid)).await?;
    if let Some(name) = delta.remove("name")
        && name.as_str() != Some(mrealm.name.as_str())
    {
        // The name is the router realm's name, which nodes and users join by.
        return Err(bad_argument("the name of a management realm cannot change"));
    }
    require_owner(&ctx.replica, &inv, &mrealm).await?;
    let modified = ctx
        .replica
        .propose(Command::Modify {
            kind: Kind::ManagementRealm,
            key: oid.to_string(),
            delta,
            status_rule: None,
        })
        .await
        .map_err(propose_failed)?;
    let modified = to_value(modified);
    publisher.publish(
        "crossbarfabriccenter.mrealm.on_mrealm_modified",
        vec![modified.clone()],
    );
    Ok(modified)
}

async fn set_roles_on_mrealm_for_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let mrealm_oid = oid_arg(&inv, 0, "mrealm_oid")?;
    let user_oid = oid_arg(&inv, 1, "user_oid")?;
    let roles = roles_arg(&inv, 2, "roles")?;
    let mrealm = mrealm_by(&ctx, MrealmRef::Oid(mrealm_oid)).await?;
    require_owner(&ctx.replica, &inv, &mrealm).await?;
    let key = format!("{mrealm_oid}/{user_oid}");
    let current = {
        let r = ctx.replica.read().await.map_err(read_failed)?;
        r.get::<User>(&user_oid.to_string())
            .map_err(store_failed)?
            .ok_or_else(|| no_such(format_args!("user {user_oid}")))?;
        if !roles.contains(&ROLE_OWNER)
            && mrealm_roles(&r, mrealm_oid, user_oid)?.contains(&ROLE_OWNER)
        {
            // Nobody but the superuser could manage a realm without owners.
            let holders: Vec<UserMrealmRole> =
                r.list(&format!("{mrealm_oid}/")).map_err(store_failed)?;
            if !holders
                .iter()
                .any(|h| h.user_oid != user_oid && h.roles.contains(&ROLE_OWNER))
            {
                return Err(bad_argument(format!(
                    "management realm {} would be left without an owner",
                    mrealm.name
                )));
            }
        }
        r.get::<UserMrealmRole>(&key).map_err(store_failed)?
    };
    let command = match (roles.is_empty(), current) {
        (true, None) => return Ok(role_names(&[])),
        (true, Some(_)) => Command::Delete {
            kind: Kind::UserMrealmRole,
            key,
            cascade: false,
        },
        (false, _) => Command::Upsert {
            record: AnyRecord::UserMrealmRole(UserMrealmRole {
                user_oid,
                mrealm_oid,
                roles: roles.clone(),
            }),
        },
    };
    ctx.replica.propose(command).await.map_err(propose_failed)?;
    // Sessions joined under a role the user no longer holds are closed by the reconciler.
    let _ = ctx.realms.reconcile().await;
    Ok(role_names(&roles))
}

/// An owner may ask about anyone, a user about themself.
async fn get_roles_on_mrealm_for_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let mrealm_oid = oid_arg(&inv, 0, "mrealm_oid")?;
    let user_oid = oid_arg(&inv, 1, "user_oid")?;
    let mrealm = mrealm_by(&ctx, MrealmRef::Oid(mrealm_oid)).await?;
    let caller = caller_user(&ctx.replica, &inv).await?;
    if caller.oid != user_oid {
        require_owner(&ctx.replica, &inv, &mrealm).await?;
    }
    let r = ctx.replica.read().await.map_err(read_failed)?;
    r.get::<User>(&user_oid.to_string())
        .map_err(store_failed)?
        .ok_or_else(|| no_such(format_args!("user {user_oid}")))?;
    Ok(role_names(&mrealm_roles(&r, mrealm_oid, user_oid)?))
}

/// The paired node `authid` of the management realm `name`.
async fn node_by_name(
    ctx: &Ctx,
    name: &str,
    authid: &str,
) -> Result<(ManagementRealm, Node), CallError> {
    let mrealm = mrealm_by(ctx, MrealmRef::Name(name)).await?;
    let r = ctx.replica.read().await.map_err(read_failed)?;
    let node: Node = r
        .lookup(Index::NodeByAuthid, &format!("{}/{authid}", mrealm.oid))
        .map_err(store_failed)?
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
    let names = flag_arg(&inv, 0, "return_names");
    let caller = caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await.map_err(read_failed)?;
    let mut nodes: Vec<Node> = r.list("").map_err(store_failed)?;
    if caller.email != "superuser" {
        let held: HashSet<String> = r
            .index_keys(Index::MrealmRoleByUser, &format!("{}/", caller.oid))
            .map_err(store_failed)?
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
    let names = flag_arg(inv, 1, "return_names");
    let mrealm = mrealm_by(ctx, by).await?;
    require_member(ctx, inv, &mrealm).await?;
    let r = ctx.replica.read().await.map_err(read_failed)?;
    let mut nodes = Vec::new();
    for key in r
        .index_keys(Index::NodeByMrealm, &format!("{}/", mrealm.oid))
        .map_err(store_failed)?
    {
        if let Some(node) = r.get::<Node>(&key).map_err(store_failed)? {
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
        let r = ctx.replica.read().await.map_err(read_failed)?;
        node_of(&r, oid)?
    };
    require_node_access(&ctx, &inv, &node, false).await?;
    Ok(record_value(&node))
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
    let node = {
        let r = ctx.replica.read().await.map_err(read_failed)?;
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
        .await
        .map_err(propose_failed)?;
    let modified = to_value(modified);
    publisher.publish(
        "crossbarfabriccenter.mrealm.on_node_modified",
        vec![modified.clone()],
    );
    Ok(modified)
}

/// Only an unpaired node record is deleted: a paired node is in use by its realm (its
/// session, cluster memberships), so it has to be unpaired first.
async fn delete_node(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "node_oid")?;
    let node = {
        let r = ctx.replica.read().await.map_err(read_failed)?;
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
        .await
        .map_err(propose_failed)?;
    let deleted = to_value(deleted);
    publisher.publish(
        "crossbarfabriccenter.mrealm.on_node_deleted",
        vec![deleted.clone()],
    );
    Ok(deleted)
}

/// The node record plus where it stands: `paired`, `mrealm_name` and `online` (a session
/// of it is joined on some replica).
async fn stat_node(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "node_oid")?;
    let node = {
        let r = ctx.replica.read().await.map_err(read_failed)?;
        node_of(&r, oid)?
    };
    require_node_access(&ctx, &inv, &node, false).await?;
    let r = ctx.replica.read().await.map_err(read_failed)?;
    let mrealm_name = match node.mrealm_oid {
        Some(m) => r
            .get::<ManagementRealm>(&m.to_string())
            .map_err(store_failed)?
            .map(|m| m.name),
        None => None,
    };
    let online = r
        .get::<Presence>(&oid.to_string())
        .map_err(store_failed)?
        .is_some();
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

fn more_handlers(ctx: &Arc<Ctx>, publisher: &Publisher) -> Vec<(&'static str, Handler)> {
    vec![
        (
            "crossbarfabriccenter.mrealm.modify_mrealm",
            backend(ctx, publisher, modify_mrealm),
        ),
        (
            "crossbarfabriccenter.mrealm.set_roles_on_mrealm_for_user",
            backend(ctx, publisher, set_roles_on_mrealm_for_user),
        ),
        (
            "crossbarfabriccenter.mrealm.get_roles_on_mrealm_for_user",
            backend(ctx, publisher, get_roles_on_mrealm_for_user),
        ),
        (
            "crossbarfabriccenter.mrealm.unpair_node_by_name",
            backend(ctx, publisher, unpair_node_by_name),
        ),
        (
            "crossbarfabriccenter.mrealm.get_node_by_name",
            backend(ctx, publisher, get_node_by_name),
        ),
        (
            "crossbarfabriccenter.mrealm.list_nodes",
            backend(ctx, publisher, list_nodes),
        ),
        (
            "crossbarfabriccenter.mrealm.list_nodes_by_mrealm",
            backend(ctx, publisher, list_nodes_by_mrealm),
        ),
        (
            "crossbarfabriccenter.mrealm.list_nodes_by_mrealm_name",
            backend(ctx, publisher, list_nodes_by_mrealm_name),
        ),
        (
            "crossbarfabriccenter.mrealm.get_node",
            backend(ctx, publisher, get_node),
        ),
        (
            "crossbarfabriccenter.mrealm.modify_node",
            backend(ctx, publisher, modify_node),
        ),
        (
            "crossbarfabriccenter.mrealm.delete_node",
            backend(ctx, publisher, delete_node),
        ),
        (
            "crossbarfabriccenter.mrealm.stat_node",
            backend(ctx, publisher, stat_node),
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::valid_name("mrealm1"));
        assert!(super::valid_name("a-b_c@d.e"));
        assert!(!super::valid_name("ab"));
        assert!(!super::valid_name("1abc"));
        assert!(!super::valid_name("wamp"));
        assert!(!super::valid_name("crossbar.x"));
        assert!(!super::valid_name("has space"));
    }
}
