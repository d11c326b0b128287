//! `crossbarfabriccenter.mrealm.arealm.*` (spec §6.4): application realms, the roles and
//! permissions of a management realm, principals with their credentials, and which roles
//! an application realm uses. Events go to `crossbarfabriccenter.mrealm.arealm.on_*`.
//!
//! Starting an application realm records the worker group (and web cluster) it runs on and
//! moves it to STARTING. Bringing it up on the nodes and moving it on to RUNNING is the job
//! of an orchestration monitor, which is not part of this module.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::args::*;
use super::errors::*;
use super::objects::*;
use super::reply::*;
use super::route;
use super::scope::Scope;
use super::to_json;
use crate::clock::now_ns;
use crate::replica::ProposeError;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{
    ApplicationRealm, ArealmRoleAssociation, Credential, Extra, Json, Permission, Principal, Role,
    RouterWorkerGroup, RouterWorkerGroupClusterPlacement, WebCluster,
};
use crate::store::{AnyRecord, ApplyError, Command, Index, Kind};
use crate::wamp::Value;
use crate::wamp::errors::INVALID_ARGUMENT;
use crate::wamp::errors::*;

const PREFIX: &str = "crossbarfabriccenter.mrealm.arealm.";

/// Authentication methods a credential can be for (those of Crossbar routers).
const AUTHMETHODS: [&str; 8] = [
    "anonymous",
    "ticket",
    "wampcra",
    "cryptosign",
    "cryptosign-proxy",
    "tls",
    "scram",
    "cookie",
];

const MATCH_POLICIES: [&str; 3] = ["exact", "prefix", "wildcard"];
const URI_CHECK_LEVELS: [&str; 2] = ["strict", "loose"];

pub fn handlers(scope: &Arc<Scope>) -> Vec<(String, Handler)> {
    let s = scope;
    vec![
        route(s, PREFIX, "list_arealms", list_arealms),
        route(s, PREFIX, "get_arealm", get_arealm),
        route(s, PREFIX, "get_arealm_by_name", get_arealm_by_name),
        route(s, PREFIX, "create_arealm", create_arealm),
        route(s, PREFIX, "delete_arealm", delete_arealm),
        route(s, PREFIX, "start_arealm", start_arealm),
        route(s, PREFIX, "stop_arealm", stop_arealm),
        route(s, PREFIX, "stat_arealm", stat_arealm),
        route(s, PREFIX, "list_router_workers", list_router_workers),
        route(s, PREFIX, "list_principals", list_principals),
        route(s, PREFIX, "get_principal", get_principal),
        route(s, PREFIX, "get_principal_by_name", get_principal_by_name),
        route(s, PREFIX, "add_principal", add_principal),
        route(s, PREFIX, "remove_principal", remove_principal),
        route(s, PREFIX, "list_principal_credentials", list_credentials),
        route(s, PREFIX, "get_principal_credential", get_credential),
        route(s, PREFIX, "add_principal_credential", add_credential),
        route(s, PREFIX, "remove_principal_credential", remove_credential),
        route(s, PREFIX, "list_roles", list_roles),
        route(s, PREFIX, "get_role", get_role),
        route(s, PREFIX, "get_role_by_name", get_role_by_name),
        route(s, PREFIX, "create_role", create_role),
        route(s, PREFIX, "delete_role", delete_role),
        route(s, PREFIX, "list_role_permissions", list_role_permissions),
        route(s, PREFIX, "add_role_permission", add_role_permission),
        route(s, PREFIX, "remove_role_permission", remove_role_permission),
        route(s, PREFIX, "get_role_permission", get_role_permission),
        route(s, PREFIX, "get_role_permissions_by_uri", permissions_by_uri),
        route(s, PREFIX, "list_arealm_roles", list_arealm_roles),
        route(s, PREFIX, "add_arealm_role", add_arealm_role),
        route(s, PREFIX, "remove_arealm_role", remove_arealm_role),
        route(s, PREFIX, "get_arealm_role", get_arealm_role),
    ]
}

fn publish(s: &Scope, topic: &str, v: &Value) {
    s.events
        .publish(&format!("{PREFIX}{topic}"), vec![v.clone()]);
}

fn arealm_key(s: &Scope, a: &Uuid) -> String {
    s.key(a)
}

fn principal_key(s: &Scope, a: &Uuid, p: &Uuid) -> String {
    format!("{}/{a}/{p}", s.mrealm_oid)
}

fn credential_key(s: &Scope, p: &Uuid, c: &Uuid) -> String {
    format!("{}/{p}/{c}", s.mrealm_oid)
}

fn permission_key(s: &Scope, r: &Uuid, p: &Uuid) -> String {
    format!("{}/{r}/{p}", s.mrealm_oid)
}

fn association_key(s: &Scope, a: &Uuid, r: &Uuid) -> String {
    format!("{}/{a}/{r}", s.mrealm_oid)
}

fn get_arealm_in(
    s: &Scope,
    r: &crate::store::Reader,
    a: &Uuid,
) -> Result<ApplicationRealm, CallError> {
    get(r, &arealm_key(s, a), "application realm", &a.to_string())
}

fn get_role_in(s: &Scope, r: &crate::store::Reader, role: &Uuid) -> Result<Role, CallError> {
    get(r, &s.key(role), "role", &role.to_string())
}

fn get_principal_in(
    s: &Scope,
    r: &crate::store::Reader,
    a: &Uuid,
    p: &Uuid,
) -> Result<Principal, CallError> {
    get(r, &principal_key(s, a, p), "principal", &p.to_string())
}

async fn delete(s: &Scope, kind: Kind, key: String, cascade: bool) -> Result<Value, CallError> {
    let deleted = propose(s, Command::Delete { kind, key, cascade }).await?;
    Ok(wire(deleted))
}

async fn insert(s: &Scope, record: AnyRecord) -> Result<Value, CallError> {
    Ok(wire(propose(s, Command::Insert { record }).await?))
}

// ---- application realms ----------------------------------------------------------------

async fn list_arealms(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let names = flag_arg(&inv, 0, "return_names")?;
    let r = reader(&s).await?;
    let items = r
        .list::<ApplicationRealm>(&s.key_prefix())?
        .into_iter()
        .map(|a| (a.oid.to_string(), a.name))
        .collect();
    Ok(oids_or_names(items, names))
}

async fn get_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let r = reader(&s).await?;
    Ok(wire_record(&get_arealm_in(&s, &r, &a)?))
}

async fn get_arealm_by_name(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let name = str_arg(&inv, 0, "name")?.to_owned();
    let r = reader(&s).await?;
    r.lookup::<ApplicationRealm>(Index::ArealmByName, &s.key(&name))?
        .map(|a| wire_record(&a))
        .ok_or_else(|| no_such_object("application realm named", format!("{name:?}")))
}

async fn create_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let mut spec = dict_arg(&inv, 0, "arealm")?;
    let oid = Uuid::new_v4();
    let name = match spec.remove("name") {
        None | Some(Json::Null) => format!("arealm-{}", &oid.to_string()[..8]),
        Some(Json::String(n)) => n,
        Some(_) => return Err(bad_argument("name must be a string")),
    };
    if !valid_realm_name(&name) {
        return Err(bad_argument(format!(
            "{name:?} is not a valid realm name (^[A-Za-z][A-Za-z0-9_\\-@\\.]{{2,254}}$)"
        )));
    }
    let owner = caller_oid(&s, &inv).await?;
    let arealm: ApplicationRealm = build(
        spec,
        json!({
            "oid": oid,
            "mrealm_oid": s.mrealm_oid,
            "name": name,
            "status": "STOPPED",
            "workergroup_oid": null,
            "webcluster_oid": null,
            "changed": now_ns(),
            "owner_oid": owner,
        }),
        INVALID_ARGUMENT,
    )?;
    let created = insert(&s, AnyRecord::ApplicationRealm(arealm)).await?;
    publish(&s, "on_arealm_created", &created);
    Ok(created)
}

async fn delete_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    // Principals, their credentials and role associations belong to the realm and go too.
    let deleted = delete(&s, Kind::ApplicationRealm, arealm_key(&s, &a), false).await?;
    publish(&s, "on_arealm_deleted", &deleted);
    Ok(deleted)
}

async fn start_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let wg = oid_arg(&inv, 1, "router_workergroup_oid")?;
    let wc = opt_oid_arg(&inv, 2, "webcluster_oid")?;
    {
        let r = reader(&s).await?;
        get_arealm_in(&s, &r, &a)?;
        find::<RouterWorkerGroup>(&r, &s.key_prefix(), &wg)?
            .ok_or_else(|| no_such_object("router worker group", wg))?;
        if let Some(wc) = wc {
            get::<WebCluster>(&r, &s.key(wc), "web cluster", &wc.to_string())?;
        }
    }
    let mut delta = Extra::new();
    delta.insert("workergroup_oid".into(), json!(wg));
    delta.insert("webcluster_oid".into(), json!(wc));
    let started = set_status(
        &s,
        Kind::ApplicationRealm,
        &arealm_key(&s, &a),
        "STARTING",
        starting_from(),
        delta,
    )
    .await?;
    let mut out = transition(&started, Some(&inv));
    out["router_workergroup_oid"] = json!(wg);
    out["webcluster_oid"] = json!(wc);
    let out = super::to_value(out);
    publish(&s, "on_arealm_starting", &out);
    Ok(out)
}

async fn stop_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let (stopping, stopped) = stop(&s, Kind::ApplicationRealm, &arealm_key(&s, &a)).await?;
    publish(
        &s,
        "on_arealm_stopping",
        &super::to_value(transition(&stopping, Some(&inv))),
    );
    publish(
        &s,
        "on_arealm_stopped",
        &super::to_value(transition(&stopped, None)),
    );
    Ok(super::to_value(transition(&stopped, Some(&inv))))
}

async fn stat_arealm(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let r = reader(&s).await?;
    let arealm = get_arealm_in(&s, &r, &a)?;
    let inside = format!("{}/{a}/", s.mrealm_oid);
    let principals = r.list::<Principal>(&inside)?;
    let mut credentials = 0;
    for p in &principals {
        credentials += r
            .list_json(Kind::Credential, &format!("{}/{}/", s.mrealm_oid, p.oid))?
            .len();
    }
    let roles = r.list_json(Kind::ArealmRoleAssociation, &inside)?.len();
    let workers = match arealm.workergroup_oid {
        Some(wg) => r
            .list_json(
                Kind::RouterWorkerGroupClusterPlacement,
                &format!("{}/{wg}/", s.mrealm_oid),
            )?
            .len(),
        None => 0,
    };
    let mut out = serde_json::to_value(&arealm).unwrap_or(Json::Null);
    out["stats"] = json!({
        "principals": principals.len(),
        "credentials": credentials,
        "roles": roles,
        "router_workers": workers,
    });
    Ok(wire(out))
}

async fn list_router_workers(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let r = reader(&s).await?;
    let arealm = get_arealm_in(&s, &r, &a)?;
    let Some(wg) = arealm.workergroup_oid else {
        return Ok(Value::List(Vec::new()));
    };
    let placements =
        r.list::<RouterWorkerGroupClusterPlacement>(&format!("{}/{wg}/", s.mrealm_oid))?;
    Ok(Value::List(placements.iter().map(wire_record).collect()))
}

// ---- principals ------------------------------------------------------------------------

async fn list_principals(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn get_principal(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    let r = reader(&s).await?;
    Ok(wire_record(&get_principal_in(&s, &r, &a, &p)?))
}

async fn get_principal_by_name(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn add_principal(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn remove_principal(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let p = oid_arg(&inv, 1, "principal_oid")?;
    // Its credentials go with it.
    let deleted = delete(&s, Kind::Principal, principal_key(&s, &a, &p), false).await?;
    publish(&s, "on_principal_removed", &deleted);
    Ok(deleted)
}

// ---- credentials -----------------------------------------------------------------------

async fn list_credentials(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn get_credential(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn add_credential(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn remove_credential(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

// ---- roles and permissions ---------------------------------------------------------------

async fn list_roles(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let names = flag_arg(&inv, 0, "return_names")?;
    let r = reader(&s).await?;
    let items = r
        .list::<Role>(&s.key_prefix())?
        .into_iter()
        .map(|role| (role.oid.to_string(), role.name))
        .collect();
    Ok(oids_or_names(items, names))
}

async fn get_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let role = oid_arg(&inv, 0, "role_oid")?;
    let r = reader(&s).await?;
    Ok(wire_record(&get_role_in(&s, &r, &role)?))
}

async fn get_role_by_name(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let name = str_arg(&inv, 0, "name")?.to_owned();
    let r = reader(&s).await?;
    r.lookup::<Role>(Index::RoleByName, &s.key(&name))?
        .map(|role| wire_record(&role))
        .ok_or_else(|| no_such_object("role named", format!("{name:?}")))
}

async fn create_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn delete_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let role = oid_arg(&inv, 0, "role_oid")?;
    let cascade = flag_arg(&inv, 1, "cascade")?;
    // Its permissions go with it; principals and realms using it refuse unless cascade.
    let deleted = delete(&s, Kind::Role, s.key(role), cascade).await?;
    publish(&s, "on_role_deleted", &deleted);
    Ok(deleted)
}

fn permissions_of(
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

async fn list_role_permissions(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn permissions_by_uri(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let role = oid_arg(&inv, 0, "role_oid")?;
    let prefix = opt_str_arg(&inv, 1, "prefix")?;
    let r = reader(&s).await?;
    let perms = permissions_of(&s, &r, &role, prefix.as_deref())?;
    Ok(Value::List(perms.iter().map(wire_record).collect()))
}

/// Checks the enumerated fields of a permission; serde checks the types of the rest.
fn check_permission(config: &Extra) -> Result<(), CallError> {
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

async fn add_role_permission(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

async fn remove_role_permission(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let role = oid_arg(&inv, 0, "role_oid")?;
    let p = oid_arg(&inv, 1, "permission_oid")?;
    let deleted = delete(&s, Kind::Permission, permission_key(&s, &role, &p), false).await?;
    // The reference publishes this as `on_arealm_role_removed`, which would tell
    // subscribers a role left a realm; the event is named after what happened.
    publish(&s, "on_permission_removed", &deleted);
    Ok(deleted)
}

async fn get_role_permission(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
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

// ---- roles of application realms -------------------------------------------------------

async fn list_arealm_roles(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let names = flag_arg(&inv, 1, "return_names")?;
    let r = reader(&s).await?;
    get_arealm_in(&s, &r, &a)?;
    let mut items = Vec::new();
    for assoc in r.list::<ArealmRoleAssociation>(&format!("{}/{a}/", s.mrealm_oid))? {
        let name = if names {
            get_role_in(&s, &r, &assoc.role_oid)?.name
        } else {
            String::new()
        };
        items.push((assoc.role_oid.to_string(), name));
    }
    Ok(oids_or_names(items, names))
}

async fn add_arealm_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let role = oid_arg(&inv, 1, "role_oid")?;
    let config = match inv.arg(2).or_else(|| inv.kwarg("config")) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Dict(_)) => Some(to_json(v)),
        Some(_) => return Err(bad_argument("config must be a dict")),
    };
    let assoc = ArealmRoleAssociation {
        mrealm_oid: s.mrealm_oid,
        arealm_oid: a,
        role_oid: role,
        config,
    };
    let added = insert(&s, AnyRecord::ArealmRoleAssociation(assoc)).await?;
    publish(&s, "on_arealm_role_added", &added);
    Ok(added)
}

async fn remove_arealm_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let role = oid_arg(&inv, 1, "role_oid")?;
    let removed = delete(
        &s,
        Kind::ArealmRoleAssociation,
        association_key(&s, &a, &role),
        false,
    )
    .await?;
    publish(&s, "on_arealm_role_removed", &removed);
    Ok(removed)
}

async fn get_arealm_role(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let a = oid_arg(&inv, 0, "arealm_oid")?;
    let role = oid_arg(&inv, 1, "role_oid")?;
    let r = reader(&s).await?;
    get_arealm_in(&s, &r, &a)?;
    let assoc: ArealmRoleAssociation = get(
        &r,
        &association_key(&s, &a, &role),
        "role association",
        &format!("{a}/{role}"),
    )?;
    Ok(wire_record(&assoc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_enums_are_checked() {
        let ok: Extra =
            serde_json::from_value(json!({"match": "prefix", "uri_check_level": "loose"}))
                .unwrap_or_default();
        assert!(check_permission(&ok).is_ok());
        assert!(check_permission(&Extra::new()).is_ok());
        let bad: Extra = serde_json::from_value(json!({"match": "glob"})).unwrap_or_default();
        assert_eq!(
            check_permission(&bad).map_err(|e| e.uri),
            Err(INVALID_ARGUMENT.to_string())
        );
        let bad: Extra = serde_json::from_value(json!({"uri_check_level": 1})).unwrap_or_default();
        assert!(check_permission(&bad).is_err());
    }

    #[test]
    fn principals_are_built_from_input_and_fixed_fields() {
        let m = Uuid::new_v4();
        let a = Uuid::new_v4();
        let role = Uuid::new_v4();
        let input: Extra = serde_json::from_value(json!({
            "authid": "joe", "role_oid": role, "oid": "ignored", "authextra": {"k": 1}
        }))
        .unwrap_or_default();
        let oid = Uuid::new_v4();
        let p: Principal = build(
            input,
            json!({"oid": oid, "mrealm_oid": m, "arealm_oid": a, "modified": 7}),
            INVALID_CONFIG,
        )
        .expect("builds");
        assert_eq!((p.oid, p.arealm_oid, p.role_oid), (oid, a, role));
        assert_eq!(p.authid, "joe");
        let missing: Extra = serde_json::from_value(json!({"authid": "joe"})).unwrap_or_default();
        let e = build::<Principal>(missing, json!({}), INVALID_CONFIG).map(|_| ());
        assert_eq!(e.map_err(|e| e.uri), Err(INVALID_CONFIG.to_string()));
    }

    #[test]
    fn unknown_arealm_keys_are_kept() {
        let input: Extra = serde_json::from_value(json!({"enable_meta_api": true, "label": "L"}))
            .unwrap_or_default();
        let a: ApplicationRealm = build(
            input,
            json!({
                "oid": Uuid::new_v4(), "mrealm_oid": Uuid::new_v4(), "name": "app1",
                "status": "STOPPED", "changed": 1, "owner_oid": null,
            }),
            INVALID_ARGUMENT,
        )
        .expect("builds");
        assert_eq!(a.extra.get("enable_meta_api"), Some(&json!(true)));
        assert_eq!(a.label.as_deref(), Some("L"));
    }
}
