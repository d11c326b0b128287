//! The commands that change durable state. A proposer fills in everything that is not a
//! function of the state (oids, timestamps, codes), so applying one is deterministic.

use serde::{Deserialize, Serialize};

use super::Kind;
use super::model::*;

/// Any stored object, tagged with its kind. Commands are short-lived, so the size spread
/// of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
pub enum AnyRecord {
    Organization(Organization),
    User(User),
    ActivationToken(ActivationToken),
    ManagementRealm(ManagementRealm),
    UserMrealmRole(UserMrealmRole),
    UserOrganizationRole(UserOrganizationRole),
    Node(Node),
    ApplicationRealm(ApplicationRealm),
    Role(Role),
    Permission(Permission),
    Principal(Principal),
    Credential(Credential),
    ArealmRoleAssociation(ArealmRoleAssociation),
    RouterCluster(RouterCluster),
    RouterClusterNodeMembership(RouterClusterNodeMembership),
    RouterWorkerGroup(RouterWorkerGroup),
    RouterWorkerGroupClusterPlacement(RouterWorkerGroupClusterPlacement),
    WebCluster(WebCluster),
    WebClusterNodeMembership(WebClusterNodeMembership),
    WebService(WebService),
    Trace(Trace),
    Presence(Presence),
    Docs(Docs),
}

/// A precondition on an object's `status` field, checked at apply time so concurrent
/// start/stop requests are decided by log order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum StatusRule {
    /// Start: the object must be in one of these states, else `cannot_start`.
    StartFrom(Vec<String>),
    /// Stop: the object must be in one of these states, else `cannot_stop`.
    StopFrom(Vec<String>),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Stores a new object; its unique lookups must be free and its parents must exist.
    Insert { record: AnyRecord },
    /// Stores an object, replacing the one with the same key (role sets, settings).
    Upsert { record: AnyRecord },
    /// Merges `delta` into an object's fields. Key fields cannot change.
    Modify {
        kind: Kind,
        key: String,
        delta: Extra,
        #[serde(default)]
        status_rule: Option<StatusRule>,
    },
    /// Deletes an object and what it owns. Objects that depend on it without being owned
    /// (nodes paired to a realm, principals using a role) refuse the delete unless `cascade`.
    Delete {
        kind: Kind,
        key: String,
        #[serde(default)]
        cascade: bool,
    },
    /// Stores an activation token, replacing any earlier one for the same e-mail and key.
    IssueActivationToken { token: ActivationToken },
    /// Marks a pending token active and, for a registration, creates the user.
    ActivateToken {
        token_oid: Oid,
        completed: i64,
        new_user: Option<User>,
    },
    /// Pairs a node (by pubkey) with a management realm. A known unpaired node keeps its oid.
    PairNode { node: Node },
    /// Clears a node's pairing and its presence.
    UnpairNode { oid: Oid },
    /// Adds a worker group to a router cluster together with its placements.
    AddWorkerGroup {
        group: RouterWorkerGroup,
        placements: Vec<RouterWorkerGroupClusterPlacement>,
    },
    /// A node's session joined on a replica; replaces any older presence of that node.
    PresenceJoin { presence: Presence },
    /// A node's session left; only removes the record of that very session.
    PresenceLeave { node_oid: Oid, session_id: u64 },
    /// A replica left the cluster or missed its lease: forget every node it held.
    PresenceDropReplica { replica_id: u64 },
    /// Removes an object's stored bytes and every index entry pointing at it, without
    /// reading it: the way out for a record that cannot be read back (an operator's
    /// `fabric-master state purge`). Dependents are not followed.
    Purge { kind: Kind, key: String },
    /// A replica restarted: forget the nodes it held in its earlier runs, keeping any that
    /// joined its current run: those of another run than `current_run`; in entries written
    /// before runs were recorded (no `current_run`), those that joined before
    /// `joined_before` (ns, by the wall clock: wrong when the clock was stepped).
    PresenceDropStale {
        replica_id: u64,
        joined_before: i64,
        #[serde(default)]
        current_run: Option<u64>,
    },
    /// `command`, applied at most once under the proposer's `id`: a proposal retried after
    /// an answer was lost (the leader died after committing it) gets the first answer again
    /// instead of being applied twice (`store/once.rs`).
    Once {
        id: String,
        /// The proposer's wall clock (ms since the epoch) when it made the proposal: answers
        /// older than `once::RETAIN_MS` before it are forgotten. Absent in entries written
        /// before it existed (then only the count bounds the memory).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
        command: Box<Command>,
    },
}
