//! `crossbarfabriccenter.user.*` on the global realm: users, organizations and the roles
//! users hold on organizations. The reference leaves most of these unimplemented; here every
//! change goes through the replicated state like the rest of the catalogue.

use std::sync::Arc;

use super::args::{delta_arg, dict_arg, flag_arg, oid_arg, roles_arg, str_arg};
use super::errors::{bad_argument, no_such};
use super::mrealm::caller_user;
use super::reply::{record_value, role_names, sorted_list};
use super::{Ctx, Publisher};
use crate::clock::now_micros;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{Oid, Organization, ROLE_OWNER, User, UserOrganizationRole};
use crate::store::{AnyRecord, Command, Index, Kind, Reader};
use crate::wamp::Value;
use crate::wamp::errors::{DEPENDENT_OBJECTS, FABRIC_NOT_AUTHORIZED};

type Reply = Result<Value, CallError>;

const SUPERUSER: &str = "superuser";

/// Organization types (cfxdb `OrganizationType`): 1 PERSONAL, 2 BUSINESS, 3 ACADEMICS.
fn valid_otype(v: &serde_json::Value) -> bool {
    v.is_null() || v.as_u64().is_some_and(|t| (1..=3).contains(&t))
}

fn valid_org_name(v: &serde_json::Value) -> bool {
    v.as_str()
        .is_some_and(|s| !s.trim().is_empty() && s.len() <= 255 && !s.contains('\0'))
}

fn org_of(r: &Reader, oid: Oid) -> Result<Organization, CallError> {
    r.get(&oid.to_string())?
        .ok_or_else(|| no_such(format_args!("organization {oid}")))
}

fn user_of(r: &Reader, oid: Oid) -> Result<User, CallError> {
    r.get(&oid.to_string())?
        .ok_or_else(|| no_such(format_args!("user {oid}")))
}

fn org_roles(r: &Reader, org: Oid, user: Oid) -> Result<Vec<u8>, CallError> {
    Ok(r.get::<UserOrganizationRole>(&format!("{org}/{user}"))?
        .map(|x| x.roles)
        .unwrap_or_default())
}

/// The caller, if it may change `org`: the superuser or an owner of the organization.
async fn require_org_owner(
    ctx: &Ctx,
    inv: &Invocation,
    org: &Organization,
) -> Result<User, CallError> {
    let user = caller_user(&ctx.replica, inv).await?;
    if user.email == SUPERUSER {
        return Ok(user);
    }
    let r = ctx.replica.read().await?;
    if org_roles(&r, org.oid, user.oid)?.contains(&ROLE_OWNER) {
        Ok(user)
    } else {
        Err(CallError::new(
            FABRIC_NOT_AUTHORIZED,
            format!(
                "{} is not an owner of organization {}",
                user.email, org.name
            ),
        ))
    }
}

async fn list_organizations(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    let orgs: Vec<Organization> = r.list("")?;
    Ok(sorted_list(
        orgs.into_iter().map(|o| o.oid.to_string()).collect(),
    ))
}

async fn get_organization(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "org_oid")?;
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    Ok(record_value(&org_of(&r, oid)?))
}

async fn create_organization(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let spec = dict_arg(&inv, 0, "organization")?;
    let name = spec.get("name").cloned().unwrap_or_default();
    if !valid_org_name(&name) {
        return Err(bad_argument("an organization needs a non-empty name"));
    }
    let otype = spec.get("otype").cloned().unwrap_or_default();
    if !valid_otype(&otype) {
        return Err(bad_argument(
            "otype must be 1 (personal), 2 (business) or 3 (academics)",
        ));
    }
    let owner = caller_user(&ctx.replica, &inv).await?;
    let text = |k: &str| spec.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let tags = match spec.get("tags") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(a)) if a.iter().all(|t| t.is_string()) => Some(
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
        ),
        Some(_) => return Err(bad_argument("tags must be a list of strings")),
    };
    let org = Organization {
        oid: uuid::Uuid::new_v4(),
        label: text("label"),
        description: text("description"),
        tags,
        name: name.as_str().unwrap_or_default().to_owned(),
        otype: otype.as_u64().and_then(|t| u8::try_from(t).ok()),
        registered: now_micros(),
    };
    let created = ctx
        .replica
        .propose(Command::Insert {
            record: AnyRecord::Organization(org.clone()),
        })
        .await?;
    ctx.replica
        .propose(Command::Upsert {
            record: AnyRecord::UserOrganizationRole(UserOrganizationRole {
                user_oid: owner.oid,
                org_oid: org.oid,
                roles: vec![ROLE_OWNER],
            }),
        })
        .await?;
    let created = super::to_value(created);
    publisher.publish(
        "crossbarfabriccenter.user.on_organization_created",
        vec![created.clone()],
    );
    Ok(created)
}

async fn modify_organization(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "org_oid")?;
    let delta = delta_arg(
        &inv,
        1,
        "org_delta",
        &["label", "description", "tags", "name", "otype"],
    )?;
    if delta.get("name").is_some_and(|n| !valid_org_name(n)) {
        return Err(bad_argument("an organization needs a non-empty name"));
    }
    if delta.get("otype").is_some_and(|t| !valid_otype(t)) {
        return Err(bad_argument(
            "otype must be 1 (personal), 2 (business) or 3 (academics)",
        ));
    }
    let org = {
        let r = ctx.replica.read().await?;
        org_of(&r, oid)?
    };
    require_org_owner(&ctx, &inv, &org).await?;
    let modified = ctx
        .replica
        .propose(Command::Modify {
            kind: Kind::Organization,
            key: oid.to_string(),
            delta,
            status_rule: None,
        })
        .await?;
    let modified = super::to_value(modified);
    publisher.publish(
        "crossbarfabriccenter.user.on_organization_modified",
        vec![modified.clone()],
    );
    Ok(modified)
}

async fn delete_organization(ctx: Arc<Ctx>, publisher: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "org_oid")?;
    let cascade = flag_arg(&inv, 1, "cascade")?;
    let org = {
        let r = ctx.replica.read().await?;
        org_of(&r, oid)?
    };
    require_org_owner(&ctx, &inv, &org).await?;
    // The owners' roles go with the organization (any one of them may delete it); other
    // members are memberships the caller has to give up explicitly (cascade).
    let members: Vec<UserOrganizationRole> = {
        let r = ctx.replica.read().await?;
        r.list(&format!("{oid}/"))?
    };
    let others = members
        .iter()
        .filter(|m| !m.roles.contains(&ROLE_OWNER))
        .count();
    if others > 0 && !cascade {
        return Err(CallError::new(
            DEPENDENT_OBJECTS,
            format!(
                "organization {} has {others} member(s) besides its owners; remove them or \
                 use cascade",
                org.name
            ),
        ));
    }
    let deleted = ctx
        .replica
        .propose(Command::Delete {
            kind: Kind::Organization,
            key: oid.to_string(),
            cascade: true,
        })
        .await?;
    let deleted = super::to_value(deleted);
    publisher.publish(
        "crossbarfabriccenter.user.on_organization_deleted",
        vec![deleted.clone()],
    );
    Ok(deleted)
}

async fn get_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "user_oid")?;
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    Ok(record_value(&user_of(&r, oid)?))
}

async fn get_user_by_pubkey(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let pubkey = str_arg(&inv, 0, "pubkey")?.to_ascii_lowercase();
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    let user: User = r
        .lookup(Index::UserByPubkey, &pubkey)?
        .ok_or_else(|| no_such(format_args!("user with pubkey {pubkey}")))?;
    Ok(record_value(&user))
}

async fn get_user_by_email(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let email = str_arg(&inv, 0, "email")?.to_owned();
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    let user: User = r
        .lookup(Index::UserByEmail, &email)?
        .ok_or_else(|| no_such(format_args!("user with e-mail {email:?}")))?;
    Ok(record_value(&user))
}

async fn list_users(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    let users: Vec<User> = r.list("")?;
    Ok(sorted_list(
        users.into_iter().map(|u| u.oid.to_string()).collect(),
    ))
}

/// Users change their own record; the superuser changes anyone's. The e-mail is the login
/// name, so the superuser's cannot change and nobody can take `superuser`.
async fn modify_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "user_oid")?;
    let mut delta = delta_arg(
        &inv,
        1,
        "user_delta",
        &["label", "description", "tags", "email", "pubkey"],
    )?;
    let caller = caller_user(&ctx.replica, &inv).await?;
    if caller.oid != oid && caller.email != SUPERUSER {
        return Err(CallError::new(
            FABRIC_NOT_AUTHORIZED,
            format!("{} may only modify their own user", caller.email),
        ));
    }
    let user = {
        let r = ctx.replica.read().await?;
        user_of(&r, oid)?
    };
    if let Some(email) = delta.get("email") {
        let Some(email) = email.as_str().filter(|e| !e.trim().is_empty()) else {
            return Err(bad_argument("email must be a non-empty string"));
        };
        if email != user.email && (user.email == SUPERUSER || email == SUPERUSER) {
            return Err(bad_argument("the superuser's e-mail cannot change hands"));
        }
    }
    match delta.get("pubkey") {
        None | Some(serde_json::Value::Null) => {}
        Some(pk) => {
            let pk = pk
                .as_str()
                .map(str::to_ascii_lowercase)
                .filter(|pk| crate::wamp::cryptosign::parse_pubkey(pk).is_some())
                .ok_or_else(|| bad_argument("pubkey must be a 64-hex Ed25519 key"))?;
            delta.insert("pubkey".into(), serde_json::Value::from(pk));
        }
    }
    let modified = ctx
        .replica
        .propose(Command::Modify {
            kind: Kind::User,
            key: oid.to_string(),
            delta,
            status_rule: None,
        })
        .await?;
    Ok(super::to_value(modified))
}

async fn list_users_by_organization(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "org_oid")?;
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    org_of(&r, oid)?;
    let members: Vec<UserOrganizationRole> = r.list(&format!("{oid}/"))?;
    Ok(sorted_list(
        members
            .into_iter()
            .map(|m| m.user_oid.to_string())
            .collect(),
    ))
}

async fn list_organizations_by_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let oid = oid_arg(&inv, 0, "user_oid")?;
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    user_of(&r, oid)?;
    // Index entries point at `<org>/<user>` role keys.
    let keys = r.index_keys(Index::OrganizationRoleByUser, &format!("{oid}/"))?;
    Ok(sorted_list(
        keys.into_iter()
            .filter_map(|k| k.split('/').next().map(str::to_owned))
            .collect(),
    ))
}

async fn set_roles_on_organization_for_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let org_oid = oid_arg(&inv, 0, "org_oid")?;
    let user_oid = oid_arg(&inv, 1, "user_oid")?;
    let roles = roles_arg(&inv, 2, "roles")?;
    let org = {
        let r = ctx.replica.read().await?;
        user_of(&r, user_oid)?;
        org_of(&r, org_oid)?
    };
    require_org_owner(&ctx, &inv, &org).await?;
    let key = format!("{org_oid}/{user_oid}");
    if !roles.contains(&ROLE_OWNER) {
        // Nobody but the superuser could manage an organization without owners.
        let r = ctx.replica.read().await?;
        let members: Vec<UserOrganizationRole> = r.list(&format!("{org_oid}/"))?;
        let owners_left = members
            .iter()
            .filter(|m| m.user_oid != user_oid && m.roles.contains(&ROLE_OWNER))
            .count();
        let was_owner = members
            .iter()
            .any(|m| m.user_oid == user_oid && m.roles.contains(&ROLE_OWNER));
        if was_owner && owners_left == 0 {
            return Err(bad_argument(format!(
                "organization {} would be left without an owner",
                org.name
            )));
        }
    }
    let command = if roles.is_empty() {
        let r = ctx.replica.read().await?;
        if r.get::<UserOrganizationRole>(&key)?.is_none() {
            return Ok(role_names(&[]));
        }
        Command::Delete {
            kind: Kind::UserOrganizationRole,
            key,
            cascade: false,
        }
    } else {
        Command::Upsert {
            record: AnyRecord::UserOrganizationRole(UserOrganizationRole {
                user_oid,
                org_oid,
                roles: roles.clone(),
            }),
        }
    };
    ctx.replica.propose(command).await?;
    Ok(role_names(&roles))
}

async fn get_roles_on_organization_for_user(ctx: Arc<Ctx>, _: Publisher, inv: Invocation) -> Reply {
    let org_oid = oid_arg(&inv, 0, "org_oid")?;
    let user_oid = oid_arg(&inv, 1, "user_oid")?;
    caller_user(&ctx.replica, &inv).await?;
    let r = ctx.replica.read().await?;
    org_of(&r, org_oid)?;
    user_of(&r, user_oid)?;
    Ok(role_names(&org_roles(&r, org_oid, user_oid)?))
}

pub fn handlers(ctx: &Arc<Ctx>, publisher: &Publisher) -> Vec<(&'static str, Handler)> {
    backends![
        ctx,
        publisher,
        "crossbarfabriccenter.user.";
        list_organizations,
        get_organization,
        create_organization,
        modify_organization,
        delete_organization,
        get_user,
        get_user_by_pubkey,
        get_user_by_email,
        list_users,
        modify_user,
        list_users_by_organization,
        list_organizations_by_user,
        set_roles_on_organization_for_user,
        get_roles_on_organization_for_user,
    ]
}
