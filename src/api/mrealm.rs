//! `crossbarfabriccenter.mrealm.*` on the global realm: the catalogue of management realms.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Ctx, Publisher, bad_argument, handler, oid_arg, propose_failed, read_failed, str_arg};
use super::{to_json, to_value};
use crate::replica::Replica;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{
    ManagementRealm, Node, ROLE_ADMIN, ROLE_GUEST, ROLE_OWNER, ROLE_USER, User, UserMrealmRole,
};
use crate::store::{AnyRecord, Command, Index};
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

fn now_micros() -> i64 {
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
async fn caller_user(replica: &Replica, inv: &Invocation) -> Result<User, CallError> {
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
                let r = ctx.replica.read().await.map_err(read_failed)?;
                let runtime = |e: crate::store::StoreError| {
                    CallError::new("wamp.error.runtime_error", e.to_string())
                };
                let mut realms: Vec<ManagementRealm> = r.list("").map_err(runtime)?;
                if !superuser {
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
    vec![
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
