//! Roles of a management realm and their permissions.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::api::args::*;
use crate::api::errors::*;
use crate::api::objects::*;
use crate::api::reply::*;
use crate::api::scope::Scope;
use crate::clock::now_ns;
use crate::router::internal::{CallError, Invocation};
use crate::store::model::{Extra, Json, Permission, Role};
use crate::store::{AnyRecord, Kind};
use crate::wamp::Value;
use crate::wamp::errors::*;

pub(super) async fn create_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let spec = dict_arg(&inv, 0, "role")?;
    if spec
        .get("name")
        .and_then(Json::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(bad_argument("a role needs a non-empty name"));
    }
    let owner = caller_oid(&s, &inv).await?;
    let role: Role = build(
        spec,
        json!({
            "oid": Uuid::new_v4(),
            "mrealm_oid": s.mrealm_oid,
            "created": now_ns(),
            "owner": owner,
        }),
        INVALID_ARGUMENT,
    )?;
    let created = insert(&s, AnyRecord::Role(role)).await?;
    publish(&s, "on_role_created", &created);
    Ok(created)
}

pub(super) async fn delete_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let role = oid_arg(&inv, 0, "role_oid")?;
    let cascade = flag_arg(&inv, 1, "cascade")?;
    // Its permissions go with it; principals and realms using it refuse unless cascade.
    let deleted = delete(&s, Kind::Role, s.key(role), cascade).await?;
    publish(&s, "on_role_deleted", &deleted);
    Ok(deleted)
}

pub(super) fn permissions_of(
    s: &Scope,
    r: &crate::store::Reader,
    role: &Uuid,
    prefix: Option<&str>,
) -> Result<Vec<Permission>, CallError> {
    get_role_in(s, r, role)?;
    let mut all = r.list::<Permission>(&format!("{}/{role}/", s.mrealm_oid))?;
    if let Some(prefix) = prefix {
        all.retain(|p| p.uri.starts_with(prefix));
    }
    all.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(all)
}

pub(super) async fn list_role_permissions(
    s: Arc<Scope>,
    inv: Invocation,
) -> Result<Value, CallError> {
    let role = oid_arg(&inv, 0, "role_oid")?;
    let prefix = opt_str_arg(&inv, 1, "prefix")?;
    let r = reader(&s).await?;
    let perms = permissions_of(&s, &r, &role, prefix.as_deref())?;
    Ok(Value::List(
        perms
            .into_iter()
            .map(|p| Value::from(p.oid.to_string()))
            .collect(),
    ))
}

pub(super) async fn permissions_by_uri(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let role = oid_arg(&inv, 0, "role_oid")?;
    let prefix = opt_str_arg(&inv, 1, "prefix")?;
    let r = reader(&s).await?;
    let perms = permissions_of(&s, &r, &role, prefix.as_deref())?;
    Ok(Value::List(perms.iter().map(wire_record).collect()))
}

/// Checks the enumerated fields of a permission; serde checks the types of the rest.
pub(super) fn check_permission(config: &Extra) -> Result<(), CallError> {
    for (field, allowed) in [
        ("match", &MATCH_POLICIES[..]),
        ("uri_check_level", &URI_CHECK_LEVELS[..]),
    ] {
        match config.get(field) {
            None | Some(Json::Null) => {}
            Some(Json::String(v)) if allowed.contains(&v.as_str()) => {}
            Some(v) => {
                return Err(bad_argument(format!(
                    "{field} must be one of {allowed:?}, not {v}"
                )));
            }
        }
    }
    Ok(())
}

pub(super) async fn add_role_permission(
    s: Arc<Scope>,
    inv: Invocation,
) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let role = oid_arg(&inv, 0, "role_oid")?;
    let uri = str_arg(&inv, 1, "uri")?.to_owned();
    let config = opt_dict_arg(&inv, 2, "config")?;
    check_permission(&config)?;
    let owner = caller_oid(&s, &inv).await?;
    let permission: Permission = build(
        config,
        json!({
            "oid": Uuid::new_v4(),
            "mrealm_oid": s.mrealm_oid,
            "role_oid": role,
            "uri": uri,
            "created": now_ns(),
            "owner": owner,
        }),
        INVALID_ARGUMENT,
    )?;
    let created = insert(&s, AnyRecord::Permission(permission)).await?;
    publish(&s, "on_permission_added", &created);
    Ok(created)
}

pub(super) async fn remove_role_permission(
    s: Arc<Scope>,
    inv: Invocation,
) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let role = oid_arg(&inv, 0, "role_oid")?;
    let p = oid_arg(&inv, 1, "permission_oid")?;
    let deleted = delete(&s, Kind::Permission, permission_key(&s, &role, &p), false).await?;
    // The reference publishes this as `on_arealm_role_removed`, which would tell
    // subscribers a role left a realm; the event is named after what happened.
    publish(&s, "on_permission_removed", &deleted);
    Ok(deleted)
}

pub(super) async fn get_role_permission(
    s: Arc<Scope>,
    inv: Invocation,
) -> Result<Value, CallError> {
    let role = oid_arg(&inv, 0, "role_oid")?;
    let p = oid_arg(&inv, 1, "permission_oid")?;
    let r = reader(&s).await?;
    get_role_in(&s, &r, &role)?;
    let perm: Permission = get(
        &r,
        &permission_key(&s, &role, &p),
        "permission",
        &p.to_string(),
    )?;
    Ok(wire_record(&perm))
}
