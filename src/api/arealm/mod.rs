//! `crossbarfabriccenter.mrealm.arealm.*` (spec §6.4): application realms, the roles and
//! permissions of a management realm, principals with their credentials, and which roles
//! an application realm uses. Events go to `crossbarfabriccenter.mrealm.arealm.on_*`.
//!
//! Starting an application realm records the worker group (and web cluster) it runs on and
//! moves it to STARTING. Bringing it up on the nodes and moving it on to RUNNING is the job
//! of an orchestration monitor, which is not part of this module.
//!
//! One file per concern: [`realms`] (application realms and the roles they use),
//! [`principals`] (principals and credentials) and [`roles`] (roles and permissions); the
//! list/get/get-by-name reads of application realms and roles are [`Named`] reads.

mod principals;
mod realms;
mod roles;

use std::sync::Arc;

use uuid::Uuid;

use crate::api::objects::*;
use crate::api::reply::wire;
use crate::api::route;
use crate::api::scope::Scope;
use crate::router::internal::{CallError, Handler};
use crate::store::model::{ApplicationRealm, Principal, Role};
use crate::store::{AnyRecord, Command, Index, Kind};
use crate::wamp::Value;

pub(super) const PREFIX: &str = "crossbarfabriccenter.mrealm.arealm.";

/// Authentication methods a credential can be for (those of Crossbar routers).
pub(super) const AUTHMETHODS: [&str; 8] = [
    "anonymous",
    "ticket",
    "wampcra",
    "cryptosign",
    "cryptosign-proxy",
    "tls",
    "scram",
    "cookie",
];

pub(super) const MATCH_POLICIES: [&str; 3] = ["exact", "prefix", "wildcard"];
pub(super) const URI_CHECK_LEVELS: [&str; 2] = ["strict", "loose"];

pub(super) fn publish(s: &Scope, topic: &str, v: &Value) {
    s.events
        .publish(&format!("{PREFIX}{topic}"), vec![v.clone()]);
}

pub(super) fn arealm_key(s: &Scope, a: &Uuid) -> String {
    s.key(a)
}

pub(super) fn principal_key(s: &Scope, a: &Uuid, p: &Uuid) -> String {
    format!("{}/{a}/{p}", s.mrealm_oid)
}

pub(super) fn credential_key(s: &Scope, p: &Uuid, c: &Uuid) -> String {
    format!("{}/{p}/{c}", s.mrealm_oid)
}

pub(super) fn permission_key(s: &Scope, r: &Uuid, p: &Uuid) -> String {
    format!("{}/{r}/{p}", s.mrealm_oid)
}

pub(super) fn association_key(s: &Scope, a: &Uuid, r: &Uuid) -> String {
    format!("{}/{a}/{r}", s.mrealm_oid)
}

pub(super) fn get_arealm_in(
    s: &Scope,
    r: &crate::store::Reader,
    a: &Uuid,
) -> Result<ApplicationRealm, CallError> {
    get(r, &arealm_key(s, a), "application realm", &a.to_string())
}

pub(super) fn get_role_in(
    s: &Scope,
    r: &crate::store::Reader,
    role: &Uuid,
) -> Result<Role, CallError> {
    get(r, &s.key(role), "role", &role.to_string())
}

pub(super) fn get_principal_in(
    s: &Scope,
    r: &crate::store::Reader,
    a: &Uuid,
    p: &Uuid,
) -> Result<Principal, CallError> {
    get(r, &principal_key(s, a, p), "principal", &p.to_string())
}

pub(super) async fn delete(
    s: &Scope,
    kind: Kind,
    key: String,
    cascade: bool,
) -> Result<Value, CallError> {
    let deleted = propose(s, Command::Delete { kind, key, cascade }).await?;
    Ok(wire(deleted))
}

pub(super) async fn insert(s: &Scope, record: AnyRecord) -> Result<Value, CallError> {
    Ok(wire(propose(s, Command::Insert { record }).await?))
}

/// Application realms as named objects.
static AREALMS: Named = Named {
    kind: Kind::ApplicationRealm,
    by_name: Index::ArealmByName,
    what: "application realm",
    oid_arg: "arealm_oid",
    name_arg: "name",
};

/// Roles as named objects.
static ROLES: Named = Named {
    kind: Kind::Role,
    by_name: Index::RoleByName,
    what: "role",
    oid_arg: "role_oid",
    name_arg: "name",
};

pub fn handlers(scope: &Arc<Scope>) -> Vec<(String, Handler)> {
    let s = scope;
    let mut all = AREALMS.routes(s, PREFIX, "arealms", "arealm");
    all.extend(ROLES.routes(s, PREFIX, "roles", "role"));
    all.extend([
        route(s, PREFIX, "create_arealm", realms::create_arealm),
        route(s, PREFIX, "delete_arealm", realms::delete_arealm),
        route(s, PREFIX, "start_arealm", realms::start_arealm),
        route(s, PREFIX, "stop_arealm", realms::stop_arealm),
        route(s, PREFIX, "stat_arealm", realms::stat_arealm),
        route(
            s,
            PREFIX,
            "list_router_workers",
            realms::list_router_workers,
        ),
        route(s, PREFIX, "list_principals", principals::list_principals),
        route(s, PREFIX, "get_principal", principals::get_principal),
        route(
            s,
            PREFIX,
            "get_principal_by_name",
            principals::get_principal_by_name,
        ),
        route(s, PREFIX, "add_principal", principals::add_principal),
        route(s, PREFIX, "remove_principal", principals::remove_principal),
        route(
            s,
            PREFIX,
            "list_principal_credentials",
            principals::list_credentials,
        ),
        route(
            s,
            PREFIX,
            "get_principal_credential",
            principals::get_credential,
        ),
        route(
            s,
            PREFIX,
            "add_principal_credential",
            principals::add_credential,
        ),
        route(
            s,
            PREFIX,
            "remove_principal_credential",
            principals::remove_credential,
        ),
        route(s, PREFIX, "create_role", roles::create_role),
        route(s, PREFIX, "delete_role", roles::delete_role),
        route(
            s,
            PREFIX,
            "list_role_permissions",
            roles::list_role_permissions,
        ),
        route(s, PREFIX, "add_role_permission", roles::add_role_permission),
        route(
            s,
            PREFIX,
            "remove_role_permission",
            roles::remove_role_permission,
        ),
        route(s, PREFIX, "get_role_permission", roles::get_role_permission),
        route(
            s,
            PREFIX,
            "get_role_permissions_by_uri",
            roles::permissions_by_uri,
        ),
        route(s, PREFIX, "list_arealm_roles", realms::list_arealm_roles),
        route(s, PREFIX, "add_arealm_role", realms::add_arealm_role),
        route(s, PREFIX, "remove_arealm_role", realms::remove_arealm_role),
        route(s, PREFIX, "get_arealm_role", realms::get_arealm_role),
    ]);
    all
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::roles::*;
    use super::*;
    use crate::store::model::Extra;
    use crate::wamp::errors::{INVALID_ARGUMENT, INVALID_CONFIG};

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
