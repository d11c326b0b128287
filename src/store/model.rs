//! The durable objects of a master (spec §8), with their wire field names.
//!
//! Long because it holds every stored record type with its key, indexes and parents, so
//! the whole data model (spec §8) reads in one place.
//!
//! Oids are UUIDv4 strings on the wire; timestamps are integers (µs for global objects,
//! ns inside a management realm, as the reference does). Objects that live inside a
//! management realm carry `mrealm_oid`: the reference kept one database per mrealm, we keep
//! one keyspace and scope keys by it. Unknown input keys are preserved in `extra`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Index, Kind};

pub type Oid = Uuid;
pub type Extra = serde_json::Map<String, serde_json::Value>;
pub type Json = serde_json::Value;

/// Roles a user can hold on a management realm or an organization (cfxdb `UserRole`).
/// Records store the code (`u8`), the wire and the router use the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UserRole {
    Owner = 1,
    Admin = 2,
    User = 3,
    Guest = 4,
}

impl UserRole {
    pub const ALL: [UserRole; 4] = [
        UserRole::Owner,
        UserRole::Admin,
        UserRole::User,
        UserRole::Guest,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            UserRole::Owner => "owner",
            UserRole::Admin => "admin",
            UserRole::User => "user",
            UserRole::Guest => "guest",
        }
    }

    pub fn from_code(code: u8) -> Option<UserRole> {
        UserRole::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn from_name(name: &str) -> Option<UserRole> {
        UserRole::ALL.into_iter().find(|r| r.name() == name)
    }
}

pub const ROLE_OWNER: u8 = UserRole::Owner as u8;
pub const ROLE_ADMIN: u8 = UserRole::Admin as u8;
pub const ROLE_USER: u8 = UserRole::User as u8;
pub const ROLE_GUEST: u8 = UserRole::Guest as u8;

/// Activation token types and states (cfxdb `ActivationToken`).
pub const TOKEN_REGISTRATION: u8 = 1;
pub const TOKEN_LOGIN: u8 = 2;
pub const TOKEN_PENDING: u8 = 1;
pub const TOKEN_ACTIVE: u8 = 2;
pub const TOKEN_EXPIRED: u8 = 3;

/// A stored object: where it lives and which unique lookups and parents it has.
pub trait Record: Serialize + serde::de::DeserializeOwned + Clone {
    const KIND: Kind;
    /// Primary key. Scoped objects start with `<mrealm_oid>/` so one range lists a realm's.
    fn key(&self) -> String;
    /// Entries of unique indexes: inserting a second object with the same entry fails.
    fn unique(&self) -> Vec<(Index, String)> {
        Vec::new()
    }
    /// Objects that must exist for this one to be stored.
    fn parents(&self) -> Vec<(Kind, String)> {
        Vec::new()
    }
}

/// A named object of a management realm (application realm, role, cluster): keyed by
/// `<mrealm>/<oid>`, unique by `<mrealm>/<name>`, stored below its management realm.
macro_rules! named_record {
    ($t:ident, $by_name:expr) => {
        impl Record for $t {
            const KIND: Kind = Kind::$t;
            fn key(&self) -> String {
                scoped(&self.mrealm_oid, &[&self.oid])
            }
            fn unique(&self) -> Vec<(Index, String)> {
                vec![($by_name, scoped(&self.mrealm_oid, &[&self.name]))]
            }
            fn parents(&self) -> Vec<(Kind, String)> {
                vec![(Kind::ManagementRealm, self.mrealm_oid.to_string())]
            }
        }
    };
}

/// A node's membership in a cluster: keyed by `<mrealm>/<cluster>/<node>`, stored below the
/// cluster and the node.
macro_rules! membership_record {
    ($t:ident, $cluster:expr) => {
        impl Record for $t {
            const KIND: Kind = Kind::$t;
            fn key(&self) -> String {
                scoped(&self.mrealm_oid, &[&self.cluster_oid, &self.node_oid])
            }
            fn parents(&self) -> Vec<(Kind, String)> {
                vec![
                    ($cluster, scoped(&self.mrealm_oid, &[&self.cluster_oid])),
                    (Kind::Node, self.node_oid.to_string()),
                ]
            }
        }
    };
}

fn scoped(mrealm: &Oid, rest: &[&dyn std::fmt::Display]) -> String {
    let mut key = mrealm.to_string();
    for part in rest {
        key.push('/');
        key.push_str(&part.to_string());
    }
    key
}

macro_rules! base_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
        pub struct $name {
            pub oid: Oid,
            #[serde(default)]
            pub label: Option<String>,
            #[serde(default)]
            pub description: Option<String>,
            #[serde(default)]
            pub tags: Option<Vec<String>>,
            $($body)*
        }
    };
}

base_fields! {
    pub struct Organization {
        pub name: String,
        /// 1 PERSONAL, 2 BUSINESS, 3 ACADEMICS.
        #[serde(default)]
        pub otype: Option<u8>,
        /// µs since the epoch.
        pub registered: i64,
    }
}

impl Record for Organization {
    const KIND: Kind = Kind::Organization;
    fn key(&self) -> String {
        self.oid.to_string()
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(Index::OrganizationByName, self.name.clone())]
    }
}

base_fields! {
    pub struct User {
        pub email: String,
        /// µs since the epoch.
        pub registered: i64,
        #[serde(default)]
        pub pubkey: Option<String>,
    }
}

impl Record for User {
    const KIND: Kind = Kind::User;
    fn key(&self) -> String {
        self.oid.to_string()
    }
    fn unique(&self) -> Vec<(Index, String)> {
        let mut u = vec![(Index::UserByEmail, self.email.clone())];
        if let Some(pk) = &self.pubkey {
            u.push((Index::UserByPubkey, pk.clone()));
        }
        u
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ActivationToken {
    pub oid: Oid,
    pub atype: u8,
    pub status: u8,
    /// µs since the epoch.
    pub created: i64,
    #[serde(default)]
    pub completed: Option<i64>,
    pub code: String,
    pub email: String,
    pub pubkey: String,
}

impl ActivationToken {
    /// The reference indexes tokens by the concatenation `email + pubkey`.
    pub fn lookup_key(email: &str, pubkey: &str) -> String {
        format!("{email}{pubkey}")
    }
}

impl Record for ActivationToken {
    const KIND: Kind = Kind::ActivationToken;
    fn key(&self) -> String {
        self.oid.to_string()
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::TokenByEmailPubkey,
            Self::lookup_key(&self.email, &self.pubkey),
        )]
    }
}

base_fields! {
    pub struct ManagementRealm {
        pub name: String,
        /// µs since the epoch.
        pub created: i64,
        /// The owning user's oid.
        pub owner: Oid,
        #[serde(default)]
        pub cf_router_worker: Option<String>,
        #[serde(default)]
        pub cf_container_worker: Option<String>,
    }
}

impl Record for ManagementRealm {
    const KIND: Kind = Kind::ManagementRealm;
    fn key(&self) -> String {
        self.oid.to_string()
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(Index::MrealmByName, self.name.clone())]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(Kind::User, self.owner.to_string())]
    }
}

/// The roles (`ROLE_*`) a user holds on a management realm.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UserMrealmRole {
    pub user_oid: Oid,
    pub mrealm_oid: Oid,
    pub roles: Vec<u8>,
}

impl Record for UserMrealmRole {
    const KIND: Kind = Kind::UserMrealmRole;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.user_oid])
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::MrealmRoleByUser,
            format!("{}/{}", self.user_oid, self.mrealm_oid),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![
            (Kind::User, self.user_oid.to_string()),
            (Kind::ManagementRealm, self.mrealm_oid.to_string()),
        ]
    }
}

/// The roles (`ROLE_*`) a user holds on an organization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UserOrganizationRole {
    pub user_oid: Oid,
    pub org_oid: Oid,
    pub roles: Vec<u8>,
}

impl Record for UserOrganizationRole {
    const KIND: Kind = Kind::UserOrganizationRole;
    fn key(&self) -> String {
        format!("{}/{}", self.org_oid, self.user_oid)
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::OrganizationRoleByUser,
            format!("{}/{}", self.user_oid, self.org_oid),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![
            (Kind::User, self.user_oid.to_string()),
            (Kind::Organization, self.org_oid.to_string()),
        ]
    }
}

base_fields! {
    /// An edge node, known by its public key; paired while `mrealm_oid` is set.
    pub struct Node {
        #[serde(default)]
        pub owner_oid: Option<Oid>,
        pub pubkey: String,
        #[serde(default)]
        pub cluster_ip: Option<String>,
        #[serde(default)]
        pub mrealm_oid: Option<Oid>,
        #[serde(default)]
        pub authid: Option<String>,
        #[serde(default)]
        pub authextra: Option<Json>,
    }
}

impl Record for Node {
    const KIND: Kind = Kind::Node;
    fn key(&self) -> String {
        self.oid.to_string()
    }
    fn unique(&self) -> Vec<(Index, String)> {
        let mut u = vec![(Index::NodeByPubkey, self.pubkey.clone())];
        if let Some(m) = &self.mrealm_oid {
            u.push((Index::NodeByMrealm, format!("{m}/{}", self.oid)));
            if let Some(a) = &self.authid {
                u.push((Index::NodeByAuthid, format!("{m}/{a}")));
            }
        }
        u
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        self.mrealm_oid
            .iter()
            .map(|m| (Kind::ManagementRealm, m.to_string()))
            .collect()
    }
}

base_fields! {
    pub struct ApplicationRealm {
        pub mrealm_oid: Oid,
        pub name: String,
        /// NONE, STOPPED, STARTING, RUNNING, PAUSED, STOPPING, ERROR, DEGRADED.
        pub status: String,
        #[serde(default)]
        pub workergroup_oid: Option<Oid>,
        #[serde(default)]
        pub webcluster_oid: Option<Oid>,
        #[serde(default)]
        pub datamarket_oid: Option<Oid>,
        /// ns since the epoch.
        pub changed: i64,
        #[serde(default)]
        pub owner_oid: Option<Oid>,
        #[serde(flatten)]
        pub extra: Extra,
    }
}

named_record!(ApplicationRealm, Index::ArealmByName);

base_fields! {
    pub struct Role {
        pub mrealm_oid: Oid,
        pub name: String,
        /// ns since the epoch.
        pub created: i64,
        #[serde(default)]
        pub owner: Option<Oid>,
        #[serde(flatten)]
        pub extra: Extra,
    }
}

named_record!(Role, Index::RoleByName);

base_fields! {
    pub struct Permission {
        pub mrealm_oid: Oid,
        pub role_oid: Oid,
        pub uri: String,
        #[serde(default)]
        pub uri_check_level: Option<String>,
        #[serde(default, rename = "match")]
        pub match_: Option<String>,
        #[serde(default)]
        pub allow_call: bool,
        #[serde(default)]
        pub allow_register: bool,
        #[serde(default)]
        pub allow_publish: bool,
        #[serde(default)]
        pub allow_subscribe: bool,
        #[serde(default)]
        pub disclose_caller: bool,
        #[serde(default)]
        pub disclose_publisher: bool,
        #[serde(default)]
        pub cache: bool,
        /// ns since the epoch.
        pub created: i64,
        #[serde(default)]
        pub owner: Option<Oid>,
    }
}

impl Record for Permission {
    const KIND: Kind = Kind::Permission;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.role_oid, &self.oid])
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::PermissionByUri,
            scoped(&self.mrealm_oid, &[&self.role_oid, &self.uri]),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(Kind::Role, scoped(&self.mrealm_oid, &[&self.role_oid]))]
    }
}

base_fields! {
    pub struct Principal {
        pub mrealm_oid: Oid,
        pub arealm_oid: Oid,
        pub authid: String,
        pub role_oid: Oid,
        /// ns since the epoch.
        pub modified: i64,
        #[serde(default)]
        pub authextra: Option<Json>,
    }
}

impl Record for Principal {
    const KIND: Kind = Kind::Principal;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.arealm_oid, &self.oid])
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::PrincipalByAuthid,
            scoped(&self.mrealm_oid, &[&self.arealm_oid, &self.authid]),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![
            (
                Kind::ApplicationRealm,
                scoped(&self.mrealm_oid, &[&self.arealm_oid]),
            ),
            (Kind::Role, scoped(&self.mrealm_oid, &[&self.role_oid])),
        ]
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Credential {
    pub oid: Oid,
    pub mrealm_oid: Oid,
    pub arealm_oid: Oid,
    pub principal_oid: Oid,
    /// ns since the epoch.
    pub created: i64,
    pub authmethod: String,
    /// The application realm's name.
    pub realm: String,
    pub authid: String,
    #[serde(default)]
    pub authconfig: Option<Json>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Record for Credential {
    const KIND: Kind = Kind::Credential;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.principal_oid, &self.oid])
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::CredentialByMethod,
            scoped(&self.mrealm_oid, &[&self.principal_oid, &self.authmethod]),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(
            Kind::Principal,
            scoped(&self.mrealm_oid, &[&self.arealm_oid, &self.principal_oid]),
        )]
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ArealmRoleAssociation {
    pub mrealm_oid: Oid,
    pub arealm_oid: Oid,
    pub role_oid: Oid,
    #[serde(default)]
    pub config: Option<Json>,
}

impl Record for ArealmRoleAssociation {
    const KIND: Kind = Kind::ArealmRoleAssociation;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.arealm_oid, &self.role_oid])
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![
            (
                Kind::ApplicationRealm,
                scoped(&self.mrealm_oid, &[&self.arealm_oid]),
            ),
            (Kind::Role, scoped(&self.mrealm_oid, &[&self.role_oid])),
        ]
    }
}

base_fields! {
    pub struct RouterCluster {
        pub mrealm_oid: Oid,
        pub name: String,
        pub status: String,
        #[serde(default)]
        pub owner_oid: Option<Oid>,
        /// ns since the epoch.
        pub changed: i64,
        #[serde(flatten)]
        pub extra: Extra,
    }
}

named_record!(RouterCluster, Index::RouterClusterByName);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RouterClusterNodeMembership {
    pub mrealm_oid: Oid,
    pub cluster_oid: Oid,
    pub node_oid: Oid,
    #[serde(default)]
    pub softlimit: Option<i64>,
    #[serde(default)]
    pub hardlimit: Option<i64>,
}

membership_record!(RouterClusterNodeMembership, Kind::RouterCluster);

base_fields! {
    pub struct RouterWorkerGroup {
        pub mrealm_oid: Oid,
        pub cluster_oid: Oid,
        pub name: String,
        pub scale: u32,
        pub status: String,
        /// ns since the epoch.
        pub changed: i64,
    }
}

impl Record for RouterWorkerGroup {
    const KIND: Kind = Kind::RouterWorkerGroup;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.cluster_oid, &self.oid])
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::WorkerGroupByName,
            scoped(&self.mrealm_oid, &[&self.cluster_oid, &self.name]),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(
            Kind::RouterCluster,
            scoped(&self.mrealm_oid, &[&self.cluster_oid]),
        )]
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RouterWorkerGroupClusterPlacement {
    pub oid: Oid,
    pub mrealm_oid: Oid,
    pub worker_group_oid: Oid,
    pub cluster_oid: Oid,
    pub node_oid: Oid,
    pub worker_name: String,
    pub status: String,
    /// ns since the epoch.
    pub changed: i64,
    #[serde(default)]
    pub tcp_listening_port: Option<u16>,
}

impl Record for RouterWorkerGroupClusterPlacement {
    const KIND: Kind = Kind::RouterWorkerGroupClusterPlacement;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.worker_group_oid, &self.oid])
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![
            (
                Kind::RouterWorkerGroup,
                scoped(
                    &self.mrealm_oid,
                    &[&self.cluster_oid, &self.worker_group_oid],
                ),
            ),
            (Kind::Node, self.node_oid.to_string()),
        ]
    }
}

base_fields! {
    pub struct WebCluster {
        pub mrealm_oid: Oid,
        pub name: String,
        pub status: String,
        #[serde(default)]
        pub owner_oid: Option<Oid>,
        /// ns since the epoch.
        pub changed: i64,
        #[serde(default)] pub tcp_version: Option<Json>,
        #[serde(default)] pub tcp_port: Option<Json>,
        #[serde(default)] pub tcp_shared: Option<Json>,
        #[serde(default)] pub tcp_interface: Option<Json>,
        #[serde(default)] pub tcp_backlog: Option<Json>,
        #[serde(default)] pub tls_key: Option<Json>,
        #[serde(default)] pub tls_certificate: Option<Json>,
        #[serde(default)] pub tls_chain_certificates: Option<Json>,
        #[serde(default)] pub tls_ca_certificates: Option<Json>,
        #[serde(default)] pub tls_dhparam: Option<Json>,
        #[serde(default)] pub tls_ciphers: Option<Json>,
        #[serde(default)] pub http_client_timeout: Option<Json>,
        #[serde(default)] pub http_hsts: Option<Json>,
        #[serde(default)] pub http_hsts_max_age: Option<Json>,
        #[serde(default)] pub http_access_log: Option<Json>,
        #[serde(default)] pub http_display_tracebacks: Option<Json>,
        /// What the last reconciler pass found on the nodes (see `api/orchestrate`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub orchestration: Option<Json>,
    }
}

named_record!(WebCluster, Index::WebClusterByName);

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WebClusterNodeMembership {
    pub mrealm_oid: Oid,
    pub cluster_oid: Oid,
    pub node_oid: Oid,
    #[serde(default)]
    pub parallel: Option<i64>,
    #[serde(default)]
    pub standby: Option<bool>,
}

membership_record!(WebClusterNodeMembership, Kind::WebCluster);

base_fields! {
    pub struct WebService {
        pub mrealm_oid: Oid,
        pub webcluster_oid: Oid,
        pub path: String,
        #[serde(rename = "type")]
        pub service_type: String,
        #[serde(flatten)]
        pub extra: Extra,
    }
}

impl Record for WebService {
    const KIND: Kind = Kind::WebService;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.webcluster_oid, &self.oid])
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::WebServiceByPath,
            scoped(&self.mrealm_oid, &[&self.webcluster_oid, &self.path]),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(
            Kind::WebCluster,
            scoped(&self.mrealm_oid, &[&self.webcluster_oid]),
        )]
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Trace {
    pub mrealm_oid: Oid,
    pub trace_id: String,
    /// `[[node oid or authid, worker_id], …]`.
    pub traced_workers: Vec<(String, String)>,
    #[serde(default)]
    pub trace_options: Option<Json>,
    #[serde(default)]
    pub eligible_reader_roles: Option<Vec<String>>,
    #[serde(default)]
    pub exclude_reader_roles: Option<Vec<String>>,
    /// stopped, starting, running, stopping, stopping_failed.
    pub status: String,
    /// ns since the epoch of the last status change.
    #[serde(default)]
    pub changed: Option<i64>,
    /// The replica that made the last status change. A start or stop is carried out by one
    /// replica; if that replica restarts half-way, it finds its own unfinished transitions.
    #[serde(default)]
    pub changed_by: Option<u64>,
}

impl Trace {
    /// States a trace may be deleted from (a failed stop leaves nothing known running).
    pub const DELETABLE: [&'static str; 2] = ["stopped", "stopping_failed"];
}

impl Record for Trace {
    const KIND: Kind = Kind::Trace;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.trace_id])
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(Kind::ManagementRealm, self.mrealm_oid.to_string())]
    }
}

/// Which replica holds a node's management session (architecture decision 4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Presence {
    pub node_oid: Oid,
    pub mrealm_oid: Oid,
    pub authid: String,
    pub replica_id: u64,
    pub session_id: u64,
    /// ns since the epoch.
    pub since: i64,
    /// The run (`Replica::run_id`, drawn at each start) of the replica process that holds
    /// the session: a restart drops what earlier runs held, whatever the clocks said.
    /// 0 in records written before runs were recorded.
    #[serde(default)]
    pub run: u64,
}

impl Record for Presence {
    const KIND: Kind = Kind::Presence;
    fn key(&self) -> String {
        self.node_oid.to_string()
    }
    fn unique(&self) -> Vec<(Index, String)> {
        vec![(
            Index::PresenceByReplica,
            format!("{:020}/{}", self.replica_id, self.node_oid),
        )]
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(Kind::Node, self.node_oid.to_string())]
    }
}

/// Documentation attached to an object of a management realm (`metadata.add_docs`), one
/// record per documented object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Docs {
    pub mrealm_oid: Oid,
    /// The documented object.
    pub oid: Oid,
    /// The documented object's type, as the caller named it (`arealm`, `role`, …).
    pub otype: String,
    pub docs: Json,
    /// ns since the epoch.
    pub modified: i64,
}

impl Record for Docs {
    const KIND: Kind = Kind::Docs;
    fn key(&self) -> String {
        scoped(&self.mrealm_oid, &[&self.oid])
    }
    fn parents(&self) -> Vec<(Kind, String)> {
        vec![(Kind::ManagementRealm, self.mrealm_oid.to_string())]
    }
}
