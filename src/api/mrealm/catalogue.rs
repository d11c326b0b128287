//! The catalogue of management realms: list, get, create, modify and delete them.

use std::sync::Arc;

use super::*;
use crate::api::args::{delta_arg, oid_arg, str_arg};
use crate::api::errors::bad_argument;
use crate::api::{Ctx, Publisher, to_json, to_value};
use crate::clock::now_micros;
use crate::router::internal::Handler;
use crate::router::internal::{CallError, Invocation};
use crate::store::model::{
    ManagementRealm, ROLE_ADMIN, ROLE_GUEST, ROLE_OWNER, ROLE_USER, User, UserMrealmRole,
};
use crate::store::{AnyRecord, Command, Index, Kind};
use crate::wamp::Value;

async fn list_mrealms(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let names = inv
        .arg(0)
        .or_else(|| inv.kwarg("return_names"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let superuser = inv.caller_authid() == Some("superuser");
    ctx.replica.linearize().await?;
    let listing = ctx.mrealms.get(&ctx.replica)?;
    if superuser {
        return Ok(if names {
            listing.names.clone()
        } else {
            listing.oids.clone()
        });
    }
    let r = ctx.replica.reader()?;
    let mut realms = listing.realms.clone();
    {
        // Only the realms the caller holds a role on.
        let email = inv.caller_authid().unwrap_or_default();
        let user: Option<User> = r.lookup(Index::UserByEmail, email)?;
        let held: std::collections::HashSet<String> = match user {
            Some(u) => r
                .index_keys(Index::MrealmRoleByUser, &format!("{}/", u.oid))?
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

async fn get_mrealm(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "mrealm_oid")?;
    let r = ctx.replica.read().await?;
    let m: Option<ManagementRealm> = r.get(&oid.to_string())?;
    drop(r);
    visible(&ctx, &inv, m, || no_such_mrealm(oid)).await
}

/// A management realm as its members (and the superuser) see it; to anyone else it does
/// not exist, as `list_mrealms` already showed them.
async fn visible(
    ctx: &Ctx,
    inv: &Invocation,
    m: Option<ManagementRealm>,
    missing: impl FnOnce() -> CallError,
) -> Reply {
    let Some(m) = m else {
        return Err(missing());
    };
    match require_member(ctx, inv, &m).await {
        Ok(_) => Ok(to_value(
            serde_json::to_value(m).expect("records serialize"),
        )),
        Err(e) if e.uri == FABRIC_NOT_AUTHORIZED => Err(missing()),
        Err(e) => Err(e),
    }
}

async fn get_mrealm_by_name(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let name = str_arg(&inv, 0, "name")?.to_owned();
    let r = ctx.replica.read().await?;
    let m: Option<ManagementRealm> = r.lookup(Index::MrealmByName, &name)?;
    drop(r);
    visible(&ctx, &inv, m, || no_such_mrealm(format!("{name:?}"))).await
}

async fn create_mrealm(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
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
        .await?;
    ctx.replica
        .propose(Command::Upsert {
            record: AnyRecord::UserMrealmRole(UserMrealmRole {
                user_oid: owner.oid,
                mrealm_oid: mrealm.oid,
                roles: vec![ROLE_OWNER, ROLE_ADMIN, ROLE_USER, ROLE_GUEST],
            }),
        })
        .await?;
    let _ = ctx.realms.reconcile().await;
    let created = to_value(created);
    let audience = tenant_audience(&ctx.replica.read().await?, mrealm.oid)?;
    publisher.publish_to(
        "crossbarfabriccenter.mrealm.on_mrealm_created",
        vec![created.clone()],
        &audience,
    );
    Ok(created)
}

async fn delete_mrealm(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "mrealm_oid")?;
    remove_mrealm(&ctx, &publisher, &inv, MrealmRef::Oid(oid)).await
}

async fn delete_mrealm_by_name(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let name = str_arg(&inv, 0, "name")?.to_owned();
    remove_mrealm(&ctx, &publisher, &inv, MrealmRef::Name(&name)).await
}

async fn remove_mrealm(
    ctx: &Ctx,
    publisher: &Publisher,
    inv: &Invocation,
    by: MrealmRef<'_>,
) -> Result<Value, CallError> {
    let mrealm = mrealm_by(ctx, by).await?;
    let caller = require_owner(&ctx.replica, inv, &mrealm).await?;
    // Who held a role on it, before the roles go with it.
    let audience = tenant_audience(&ctx.replica.read().await?, mrealm.oid)?;
    let deleted = ctx
        .replica
        .propose(Command::Delete {
            kind: crate::store::Kind::ManagementRealm,
            key: mrealm.oid.to_string(),
            cascade: cascade_arg(inv),
        })
        .await?;
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
    publisher.publish_to(
        "crossbarfabriccenter.mrealm.on_realm_deleted",
        vec![event.clone()],
        &audience,
    );
    Ok(event)
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
        .await?;
    let modified = to_value(modified);
    let audience = tenant_audience(&ctx.replica.read().await?, mrealm.oid)?;
    publisher.publish_to(
        "crossbarfabriccenter.mrealm.on_mrealm_modified",
        vec![modified.clone()],
        &audience,
    );
    Ok(modified)
}

/// This group's procedures, as (URI, handler) pairs.
pub(super) fn handlers(ctx: &Arc<Ctx>, publisher: &Publisher) -> Vec<(&'static str, Handler)> {
    backends![
        ctx,
        publisher,
        "crossbarfabriccenter.mrealm.";
        list_mrealms,
        get_mrealm,
        get_mrealm_by_name,
        create_mrealm,
        delete_mrealm,
        delete_mrealm_by_name,
        modify_mrealm,
    ]
}
