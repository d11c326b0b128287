//! Why a replica could not do what it was asked: typed, serializable where they cross the
//! wire between replicas, and mapped to WAMP error URIs in one place (`api::errors`).

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;
use crate::store::{ApplyError, StoreError};

/// Why a proposal did not produce an answer. Crosses the wire when a write is forwarded.
#[derive(thiserror::Error, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ProposeError {
    #[error(transparent)]
    Refused(#[from] ApplyError),
    #[error("this replica is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<String> },
    #[error("no quorum: {0}")]
    NoQuorum(String),
    #[error("the write was not confirmed within {0} ms; it may still be applied")]
    Timeout(u64),
    #[error("replica failure: {0}")]
    Fatal(String),
}

/// Why a linearizable read could not be served.
#[derive(thiserror::Error, Debug)]
pub enum ReadError {
    #[error("no quorum to confirm a linearizable read: {0}")]
    NoQuorum(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a membership change (join, remove) failed. Crosses the wire to the CLI and to the
/// replica that passed the request on to the leader.
#[derive(thiserror::Error, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum MembershipError {
    #[error("no leader")]
    NoLeader,
    #[error("the leader at {addr} could not be asked: {message}")]
    LeaderUnreachable { addr: String, message: String },
    #[error("cannot remove the last voter")]
    LastVoter,
    #[error("replica {0} did not catch up within 120 s")]
    NotCaughtUp(NodeId),
    #[error("the joining replica at {addr} could not be asked for its state: {message}")]
    JoinerUnreachable { addr: String, message: String },
    #[error("the replica at {addr} is replica {found}, not {expected}")]
    WrongReplica {
        addr: String,
        expected: NodeId,
        found: NodeId,
    },
    #[error(
        "replica {id} at {addr} holds the state of another cluster (voters {voters:?}); \
         start it on an empty data dir to join"
    )]
    ForeignState {
        id: NodeId,
        addr: String,
        voters: Vec<NodeId>,
    },
    #[error("{0}")]
    Raft(String),
}

/// Why a query of the CLI (`state get|list|count`) failed; crosses the wire as JSON.
#[derive(thiserror::Error, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum QueryError {
    #[error("no quorum to confirm a linearizable read: {0}")]
    NoQuorum(String),
    #[error("storage failure: {0}")]
    Store(String),
}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> QueryError {
        QueryError::Store(e.to_string())
    }
}

impl From<ReadError> for QueryError {
    fn from(e: ReadError) -> QueryError {
        match e {
            ReadError::NoQuorum(m) => QueryError::NoQuorum(m),
            ReadError::Store(e) => e.into(),
        }
    }
}
