//! `crossbarfabriccenter.mrealm.*` on the global realm: the catalogue of management realms,
//! the roles users hold on them, and the nodes paired to them.
//!
//! One file per concern: [`catalogue`] (the realms themselves), [`roles`] (who holds which
//! role on them) and [`nodes`] (pairing and node records); this module holds what they share:
//! who the caller is and what they may touch.

mod catalogue;
mod nodes;
mod roles;

use std::sync::Arc;

use crate::api::errors::no_such;
use crate::api::reply::sorted_list;
use crate::api::{Ctx, Publisher};
use crate::clock::now_micros;
use crate::replica::Replica;
use crate::router::internal::Handler;
use crate::router::internal::{CallError, Invocation};
use crate::store::model::{ManagementRealm, Node, Oid, ROLE_OWNER, User, UserMrealmRole};
use crate::store::{AnyRecord, Command, Index, Reader};
use crate::wamp::Value;
use crate::wamp::errors::FABRIC_NOT_AUTHORIZED;

/// Names the reference keeps for itself (`master/mrealm/mrealm.py`).
pub(super) const PROTECTED: [&str; 15] = [
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
pub(super) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_-@.".contains(c));
    let len_ok = (3..=255).contains(&name.len());
    let protected = PROTECTED
        .iter()
        .any(|p| name == *p || name.starts_with(&format!("{p}.")));
    first_ok && rest_ok && len_ok && !protected
}

pub(super) fn no_such_mrealm(what: impl std::fmt::Display) -> CallError {
    CallError::new(
        "crossbar.error.no_such_object",
        format!("no management realm {what}"),
    )
}

/// The caller's user record: the superuser gets one (e-mail `superuser`) on first use.
pub(super) async fn caller_user(replica: &Replica, inv: &Invocation) -> Result<User, CallError> {
    if inv.caller_authrole() != Some("user") {
        return Err(CallError::new(
            crate::wamp::errors::FABRIC_NOT_AUTHORIZED,
            format!("not authorized for role {:?}", inv.caller_authrole()),
        ));
    }
    let email = inv.caller_authid().unwrap_or_default().to_owned();
    let r = replica.read().await?;
    if let Some(u) = r.lookup::<User>(Index::UserByEmail, &email)? {
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
            let r = replica.read().await?;
            r.lookup::<User>(Index::UserByEmail, &email)?
                .ok_or_else(|| CallError::new("crossbar.error.no_such_object", "no superuser"))
        }
        Err(e) => Err(CallError::from(e)),
    }
}

/// The caller, if it may manage `mrealm`: the superuser, or a user holding OWNER on it.
pub(super) async fn require_owner(
    replica: &Replica,
    inv: &Invocation,
    mrealm: &ManagementRealm,
) -> Result<User, CallError> {
    let user = caller_user(replica, inv).await?;
    if user.email == "superuser" {
        return Ok(user);
    }
    let r = replica.read().await?;
    let roles: Option<UserMrealmRole> = r.get(&format!("{}/{}", mrealm.oid, user.oid))?;
    if roles.is_some_and(|r| r.roles.contains(&ROLE_OWNER)) {
        Ok(user)
    } else {
        Err(CallError::new(
            "fabric.not-authorized",
            format!("{} is not an owner of {}", user.email, mrealm.name),
        ))
    }
}

pub(super) async fn mrealm_by(ctx: &Ctx, by: MrealmRef<'_>) -> Result<ManagementRealm, CallError> {
    let r = ctx.replica.read().await?;
    let found: Option<ManagementRealm> = match by {
        MrealmRef::Oid(oid) => r.get(&oid.to_string()),
        MrealmRef::Name(name) => r.lookup(Index::MrealmByName, name),
    }?;
    found.ok_or_else(|| match by {
        MrealmRef::Oid(oid) => no_such_mrealm(oid),
        MrealmRef::Name(name) => no_such_mrealm(format!("{name:?}")),
    })
}

#[derive(Clone, Copy)]
pub(super) enum MrealmRef<'a> {
    Oid(uuid::Uuid),
    Name(&'a str),
}

pub(super) fn cascade_arg(inv: &Invocation) -> bool {
    inv.arg(1)
        .or_else(|| inv.kwarg("cascade"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub(super) type Reply = Result<Value, CallError>;

pub(super) fn mrealm_roles(r: &Reader, mrealm: Oid, user: Oid) -> Result<Vec<u8>, CallError> {
    Ok(r.get::<UserMrealmRole>(&format!("{mrealm}/{user}"))?
        .map(|x| x.roles)
        .unwrap_or_default())
}

/// The caller, if it may look into `mrealm`: the superuser or a user holding any role on it.
pub(super) async fn require_member(
    ctx: &Ctx,
    inv: &Invocation,
    mrealm: &ManagementRealm,
) -> Result<User, CallError> {
    let user = caller_user(&ctx.replica, inv).await?;
    if user.email == "superuser" {
        return Ok(user);
    }
    let r = ctx.replica.read().await?;
    if mrealm_roles(&r, mrealm.oid, user.oid)?.is_empty() {
        Err(CallError::new(
            FABRIC_NOT_AUTHORIZED,
            format!("{} holds no role on {}", user.email, mrealm.name),
        ))
    } else {
        Ok(user)
    }
}

/// Who may receive an event about `mrealm` on the global realm: the superuser and the
/// users holding a role on it. Other tenants never learn of its nodes and changes.
pub(super) fn tenant_audience(r: &Reader, mrealm: Oid) -> Result<crate::wamp::Dict, CallError> {
    let mut authids = vec![Value::from("superuser")];
    for held in r.list::<UserMrealmRole>(&format!("{mrealm}/"))? {
        if let Some(user) = r.get::<User>(&held.user_oid.to_string())? {
            authids.push(Value::from(user.email));
        }
    }
    Ok(crate::dict! {"eligible_authid" => Value::List(authids)})
}

/// The audience of an event about a node: its management realm's, or (unpaired) its
/// owner's and the superuser's.
pub(super) fn node_audience(r: &Reader, node: &Node) -> Result<crate::wamp::Dict, CallError> {
    if let Some(mrealm) = node.mrealm_oid {
        return tenant_audience(r, mrealm);
    }
    let mut authids = vec![Value::from("superuser")];
    if let Some(owner) = node.owner_oid
        && let Some(user) = r.get::<User>(&owner.to_string())?
    {
        authids.push(Value::from(user.email));
    }
    Ok(crate::dict! {"eligible_authid" => Value::List(authids)})
}

pub(super) fn node_of(r: &Reader, oid: Oid) -> Result<Node, CallError> {
    r.get(&oid.to_string())?
        .ok_or_else(|| no_such(format_args!("node {oid}")))
}

/// Who may see (`manage == false`) or change (`manage == true`) a node: for a paired node a
/// member (an owner) of its management realm, for an unpaired one the user who paired it
/// last; the superuser always.
pub(super) async fn require_node_access(
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
                    FABRIC_NOT_AUTHORIZED,
                    format!("{} does not own node {}", user.email, node.oid),
                ))
            }
        }
    }
}

/// Node oids, or (with `return_names`) the authids of those that are paired.
pub(super) fn node_list(nodes: Vec<Node>, names: bool) -> Value {
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

/// Every `crossbarfabriccenter.mrealm.*` procedure of the global realm.
pub fn handlers(ctx: &Arc<Ctx>, publisher: &Publisher) -> Vec<(&'static str, Handler)> {
    let mut all = catalogue::handlers(ctx, publisher);
    all.extend(roles::handlers(ctx, publisher));
    all.extend(nodes::handlers(ctx, publisher));
    all
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
