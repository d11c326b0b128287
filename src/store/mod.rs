//! The domain model, its commands and the deterministic state machine over redb tables.
//!
//! Every object kind has one table (`&str` key → JSON), every lookup one index table
//! (`&str` → primary key). Commands are applied inside the caller's write transaction, so the
//! raft layer can apply a whole batch of log entries in one commit.

mod apply;
mod command;
pub mod model;
pub mod once;
mod read;
pub mod snapshot;

use std::fmt;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

pub use apply::apply;
pub use command::{AnyRecord, Command, StatusRule};
pub use read::Reader;

/// The object kinds, one redb table each.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Organization,
    User,
    ActivationToken,
    ManagementRealm,
    UserMrealmRole,
    UserOrganizationRole,
    Node,
    ApplicationRealm,
    Role,
    Permission,
    Principal,
    Credential,
    ArealmRoleAssociation,
    RouterCluster,
    RouterClusterNodeMembership,
    RouterWorkerGroup,
    RouterWorkerGroupClusterPlacement,
    WebCluster,
    WebClusterNodeMembership,
    WebService,
    Trace,
    Presence,
    Docs,
}

impl Kind {
    pub const ALL: [Kind; 23] = [
        Kind::Organization,
        Kind::User,
        Kind::ActivationToken,
        Kind::ManagementRealm,
        Kind::UserMrealmRole,
        Kind::UserOrganizationRole,
        Kind::Node,
        Kind::ApplicationRealm,
        Kind::Role,
        Kind::Permission,
        Kind::Principal,
        Kind::Credential,
        Kind::ArealmRoleAssociation,
        Kind::RouterCluster,
        Kind::RouterClusterNodeMembership,
        Kind::RouterWorkerGroup,
        Kind::RouterWorkerGroupClusterPlacement,
        Kind::WebCluster,
        Kind::WebClusterNodeMembership,
        Kind::WebService,
        Kind::Trace,
        Kind::Presence,
        Kind::Docs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Organization => "organization",
            Kind::User => "user",
            Kind::ActivationToken => "activation_token",
            Kind::ManagementRealm => "management_realm",
            Kind::UserMrealmRole => "user_mrealm_role",
            Kind::UserOrganizationRole => "user_organization_role",
            Kind::Node => "node",
            Kind::ApplicationRealm => "application_realm",
            Kind::Role => "role",
            Kind::Permission => "permission",
            Kind::Principal => "principal",
            Kind::Credential => "credential",
            Kind::ArealmRoleAssociation => "arealm_role_association",
            Kind::RouterCluster => "router_cluster",
            Kind::RouterClusterNodeMembership => "router_cluster_node_membership",
            Kind::RouterWorkerGroup => "router_worker_group",
            Kind::RouterWorkerGroupClusterPlacement => "router_worker_group_cluster_placement",
            Kind::WebCluster => "web_cluster",
            Kind::WebClusterNodeMembership => "web_cluster_node_membership",
            Kind::WebService => "web_service",
            Kind::Trace => "trace",
            Kind::Presence => "presence",
            Kind::Docs => "docs",
        }
    }

    pub(crate) fn table(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Unique lookups, one redb table each (index key → primary key).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Index {
    OrganizationByName,
    UserByEmail,
    UserByPubkey,
    TokenByEmailPubkey,
    MrealmByName,
    MrealmRoleByUser,
    OrganizationRoleByUser,
    NodeByPubkey,
    /// `<mrealm>/<node oid>`: the nodes paired to a realm, by range.
    NodeByMrealm,
    /// `<mrealm>/<authid>`.
    NodeByAuthid,
    ArealmByName,
    RoleByName,
    PermissionByUri,
    PrincipalByAuthid,
    CredentialByMethod,
    RouterClusterByName,
    WorkerGroupByName,
    WebClusterByName,
    WebServiceByPath,
    /// `<replica id, zero padded>/<node oid>`.
    PresenceByReplica,
}

impl Index {
    pub const ALL: [Index; 20] = [
        Index::OrganizationByName,
        Index::UserByEmail,
        Index::UserByPubkey,
        Index::TokenByEmailPubkey,
        Index::MrealmByName,
        Index::MrealmRoleByUser,
        Index::OrganizationRoleByUser,
        Index::NodeByPubkey,
        Index::NodeByMrealm,
        Index::NodeByAuthid,
        Index::ArealmByName,
        Index::RoleByName,
        Index::PermissionByUri,
        Index::PrincipalByAuthid,
        Index::CredentialByMethod,
        Index::RouterClusterByName,
        Index::WorkerGroupByName,
        Index::WebClusterByName,
        Index::WebServiceByPath,
        Index::PresenceByReplica,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Index::OrganizationByName => "idx_organization_by_name",
            Index::UserByEmail => "idx_user_by_email",
            Index::UserByPubkey => "idx_user_by_pubkey",
            Index::TokenByEmailPubkey => "idx_token_by_email_pubkey",
            Index::MrealmByName => "idx_mrealm_by_name",
            Index::MrealmRoleByUser => "idx_mrealm_role_by_user",
            Index::OrganizationRoleByUser => "idx_organization_role_by_user",
            Index::NodeByPubkey => "idx_node_by_pubkey",
            Index::NodeByMrealm => "idx_node_by_mrealm",
            Index::NodeByAuthid => "idx_node_by_authid",
            Index::ArealmByName => "idx_arealm_by_name",
            Index::RoleByName => "idx_role_by_name",
            Index::PermissionByUri => "idx_permission_by_uri",
            Index::PrincipalByAuthid => "idx_principal_by_authid",
            Index::CredentialByMethod => "idx_credential_by_method",
            Index::RouterClusterByName => "idx_router_cluster_by_name",
            Index::WorkerGroupByName => "idx_worker_group_by_name",
            Index::WebClusterByName => "idx_web_cluster_by_name",
            Index::WebServiceByPath => "idx_web_service_by_path",
            Index::PresenceByReplica => "idx_presence_by_replica",
        }
    }

    pub(crate) fn table(self) -> TableDefinition<'static, &'static str, &'static str> {
        TableDefinition::new(self.name())
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a command was refused. Refusals are results, not failures: they are part of the
/// replicated history and every replica refuses the same command the same way.
#[derive(thiserror::Error, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ApplyError {
    #[error("no {kind} object with key {key}")]
    NoSuchObject { kind: Kind, key: String },
    #[error("a {kind} with key {key} already exists")]
    Duplicate { kind: Kind, key: String },
    #[error("a {kind} with {index} = {value} already exists")]
    AlreadyExists {
        kind: Kind,
        index: Index,
        value: String,
    },
    #[error("{kind} {key} has {count} dependent {dependent} object(s); use cascade")]
    DependentObjects {
        kind: Kind,
        key: String,
        dependent: Kind,
        count: usize,
    },
    #[error("{kind} {key} is {status}, not stopped")]
    NotStopped {
        kind: Kind,
        key: String,
        status: String,
    },
    #[error("{kind} {key} cannot start from status {status}")]
    CannotStart {
        kind: Kind,
        key: String,
        status: String,
    },
    #[error("{kind} {key} cannot stop from status {status}")]
    CannotStop {
        kind: Kind,
        key: String,
        status: String,
    },
    #[error("node with pubkey {pubkey} is already paired")]
    NodeAlreadyPaired { pubkey: String },
    #[error("node {key} is not paired")]
    NodeNotPaired { key: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The result of applying one command: the affected object as JSON, or a refusal.
pub type Applied = Result<serde_json::Value, ApplyError>;

/// A storage failure: the disk or the file, never the command.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("corrupt record in {table}: {source}")]
    Corrupt {
        table: &'static str,
        source: serde_json::Error,
    },
    #[error("corrupt snapshot: {0}")]
    Snapshot(String),
    /// The file was altered outside redb (a bad disk, a bad copy, a truncation): refused
    /// rather than served.
    #[error(
        "the state file {path} is damaged ({reason}); this replica will not serve it. Move it \
         away and start the replica on an empty data dir: it rejoins its cluster and gets the \
         state from the others (a cluster of one: restore a backup with `fabric-master restore`)"
    )]
    Damaged { path: String, reason: String },
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.into())
            }
        }
    )*};
}
redb_errors!(
    redb::TableError,
    redb::StorageError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// The end of the key range of keys starting with `prefix`. Keys are ASCII (uuids, names,
/// hex), and U+10FFFF sorts after any of them.
pub(crate) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// The objects of `kind` in `table` whose key starts with `prefix`, as JSON, in key order.
pub(crate) fn range_json(
    table: &impl redb::ReadableTable<&'static str, &'static [u8]>,
    kind: Kind,
    prefix: &str,
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    let end = prefix_end(prefix);
    let mut out = Vec::new();
    for item in table.range(prefix..end.as_str())? {
        let (k, v) = item?;
        match serde_json::from_slice(v.value()) {
            Ok(json) => out.push((k.value().to_string(), json)),
            // One unreadable record must not fail a listing for everyone: it is reported
            // and left out (and can still be deleted by its key).
            Err(e) => tracing::warn!(
                "skipping unreadable record {}/{}: {e}",
                kind.name(),
                k.value()
            ),
        }
    }
    Ok(out)
}

/// Creates every state table, so readers never meet a missing one.
pub fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    for kind in Kind::ALL {
        txn.open_table(kind.table())?;
    }
    for index in Index::ALL {
        txn.open_table(index.table())?;
    }
    txn.open_table(once::APPLIED)?;
    txn.open_table(once::APPLIED_BY_SEQ)?;
    Ok(())
}
