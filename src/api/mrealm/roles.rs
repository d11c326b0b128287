//! The roles users hold on management realms.

use std::sync::Arc;

use super::*;
use crate::api::args::{oid_arg, roles_arg};
use crate::api::errors::{bad_argument, no_such};
use crate::api::reply::role_names;
use crate::api::{Ctx, Publisher};
use crate::router::internal::Handler;
use crate::router::internal::Invocation;
use crate::store::model::{ROLE_OWNER, User, UserMrealmRole};
use crate::store::{AnyRecord, Command, Kind};

async fn set_roles_on_mrealm_for_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let mrealm_oid = oid_arg(&inv, 0, "mrealm_oid")?;
    let user_oid = oid_arg(&inv, 1, "user_oid")?;
    let roles = roles_arg(&inv, 2, "roles")?;
    let mrealm = mrealm_by(&ctx, MrealmRef::Oid(mrealm_oid)).await?;
    require_owner(&ctx.replica, &inv, &mrealm).await?;
    let key = format!("{mrealm_oid}/{user_oid}");
    let current = {
        let r = ctx.replica.read().await?;
        r.get::<User>(&user_oid.to_string())?
            .ok_or_else(|| no_such(format_args!("user {user_oid}")))?;
        if !roles.contains(&ROLE_OWNER)
            && mrealm_roles(&r, mrealm_oid, user_oid)?.contains(&ROLE_OWNER)
        {
            // Nobody but the superuser could manage a realm without owners.
            let holders: Vec<UserMrealmRole> = r.list(&format!("{mrealm_oid}/"))?;
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
        r.get::<UserMrealmRole>(&key)?
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
    ctx.replica.propose(command).await?;
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
    let r = ctx.replica.read().await?;
    r.get::<User>(&user_oid.to_string())?
        .ok_or_else(|| no_such(format_args!("user {user_oid}")))?;
    Ok(role_names(&mrealm_roles(&r, mrealm_oid, user_oid)?))
}

/// This group's procedures, as (URI, handler) pairs.
pub(super) fn handlers(ctx: &Arc<Ctx>, publisher: &Publisher) -> Vec<(&'static str, Handler)> {
    backends![
        ctx,
        publisher,
        "crossbarfabriccenter.mrealm.";
        set_roles_on_mrealm_for_user,
        get_roles_on_mrealm_for_user,
    ]
}
