//! Principals of application realms and their credentials.

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
use crate::replica::ProposeError;
use crate::router::internal::{CallError, Invocation};
use crate::store::model::{Credential, Json, Principal};
use crate::store::{AnyRecord, ApplyError, Command, Index, Kind};
use crate::wamp::Value;
use crate::wamp::errors::*;

pub(super) async fn list_principals(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let names = flag_arg(&inv, 1, "return_names")?;
    let r = reader(&s).await?;
    get_arealm_in(&s, &r, &a)?;
    let items = r
        .list::<Principal>(&format!("{}/{a}/", s.mrealm_oid))?
        .into_iter()
        .map(|p| (p.oid.to_string(), p.authid))
        .collect();
    Ok(oids_or_names(items, names))
}

pub(super) async fn get_principal(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    let r = reader(&s).await?;
    Ok(wire_record(&get_principal_in(&s, &r, &a, &p)?))
}

pub(super) async fn get_principal_by_name(
    s: Arc<Scope>,
    inv: Invocation,
) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let name = str_arg(&inv, 1, "principal_name")?.to_owned();
    let r = reader(&s).await?;
    r.lookup::<Principal>(
        Index::PrincipalByAuthid,
        &format!("{}/{a}/{name}", s.mrealm_oid),
    )?
    .map(|p| wire_record(&p))
    .ok_or_else(|| no_such_object("principal with authid", format!("{name:?}")))
}

pub(super) async fn add_principal(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let spec = dict_arg(&inv, 1, "principal")?;
    if spec
        .get("authid")
        .and_then(Json::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(CallError::new(
            INVALID_CONFIG,
            "a principal needs a non-empty authid",
        ));
    }
    let principal: Principal = build(
        spec,
        json!({
            "oid": Uuid::new_v4(),
            "mrealm_oid": s.mrealm_oid,
            "arealm_oid": a,
            "modified": now_ns(),
        }),
        INVALID_CONFIG,
    )?;
    let created = insert(&s, AnyRecord::Principal(principal)).await?;
    publish(&s, "on_principal_created", &created);
    Ok(created)
}

pub(super) async fn remove_principal(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    // Its credentials go with it.
    let deleted = delete(&s, Kind::Principal, principal_key(&s, &a, &p), false).await?;
    publish(&s, "on_principal_removed", &deleted);
    Ok(deleted)
}

pub(super) async fn list_credentials(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    let r = reader(&s).await?;
    get_principal_in(&s, &r, &a, &p)?;
    let items = r
        .list::<Credential>(&format!("{}/{p}/", s.mrealm_oid))?
        .into_iter()
        .map(|c| (c.oid.to_string(), c.authmethod))
        .collect();
    Ok(oids_or_names(items, false))
}

pub(super) async fn get_credential(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    let c = oid_arg(&inv, 2, "credential_oid")?;
    let r = reader(&s).await?;
    get_principal_in(&s, &r, &a, &p)?;
    let cred: Credential = get(
        &r,
        &credential_key(&s, &p, &c),
        "credential",
        &c.to_string(),
    )?;
    Ok(wire_record(&cred))
}

pub(super) async fn add_credential(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    let spec = dict_arg(&inv, 2, "credential")?;
    match spec.get("authmethod").and_then(Json::as_str) {
        Some(m) if AUTHMETHODS.contains(&m) => {}
        other => {
            return Err(CallError::new(
                INVALID_CONFIG,
                format!("authmethod must be one of {AUTHMETHODS:?}, not {other:?}"),
            ));
        }
    }
    let (realm, authid) = {
        let r = reader(&s).await?;
        let arealm = get_arealm_in(&s, &r, &a)?;
        let principal = get_principal_in(&s, &r, &a, &p)?;
        (arealm.name, principal.authid)
    };
    let credential: Credential = build(
        spec,
        json!({
            "oid": Uuid::new_v4(),
            "mrealm_oid": s.mrealm_oid,
            "arealm_oid": a,
            "principal_oid": p,
            "created": now_ns(),
            "realm": realm,
            "authid": authid,
        }),
        INVALID_CONFIG,
    )?;
    let created = s
        .ctx
        .replica
        .propose(Command::Insert {
            record: AnyRecord::Credential(credential),
        })
        .await
        .map_err(|e| match e {
            // The reference answers a second credential for the same method this way.
            ProposeError::Refused(
                ref refusal @ (ApplyError::AlreadyExists { .. } | ApplyError::Duplicate { .. }),
            ) => CallError::new("crossbar.error.already_running", refusal.to_string()),
            e => CallError::from(e),
        })?;
    let created = wire(created);
    publish(&s, "on_principal_credential_added", &created);
    Ok(created)
}

pub(super) async fn remove_credential(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    let c = oid_arg(&inv, 2, "credential_oid")?;
    {
        let r = reader(&s).await?;
        get_principal_in(&s, &r, &a, &p)?;
    }
    let deleted = delete(&s, Kind::Credential, credential_key(&s, &p, &c), false).await?;
    publish(&s, "on_principal_credential_removed", &deleted);
    Ok(deleted)
}
