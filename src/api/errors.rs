//! How the management API fails a call, written once: every lower layer's error becomes a
//! WAMP ERROR here (`?` does the rest), with the URIs of the one table in
//! [`crate::wamp::errors`].

use crate::replica::{ProposeError, ReadError};
use crate::store::{ApplyError, StoreError};
use crate::wamp::CallError;
use crate::wamp::errors::*;

/// The URI a refused command answers with (spec §9).
pub fn refusal_uri(e: &ApplyError) -> &'static str {
    match e {
        ApplyError::NoSuchObject { .. } => NO_SUCH_OBJECT,
        ApplyError::Duplicate { .. } | ApplyError::AlreadyExists { .. } => ALREADY_EXISTS,
        ApplyError::DependentObjects { .. } => DEPENDENT_OBJECTS,
        ApplyError::NotStopped { .. } => NOT_STOPPED,
        ApplyError::CannotStart { .. } => CANNOT_START,
        ApplyError::CannotStop { .. } => CANNOT_STOP,
        ApplyError::NodeAlreadyPaired { .. } => NODE_ALREADY_PAIRED,
        ApplyError::NodeNotPaired { .. } => NODE_NOT_PAIRED,
        ApplyError::InvalidArgument(_) => INVALID_ARGUMENT,
    }
}

impl From<ApplyError> for CallError {
    fn from(e: ApplyError) -> CallError {
        CallError::new(refusal_uri(&e), e.to_string())
    }
}

impl From<ProposeError> for CallError {
    fn from(e: ProposeError) -> CallError {
        let uri = match &e {
            ProposeError::Refused(refusal) => refusal_uri(refusal),
            ProposeError::NotLeader { .. } | ProposeError::NoQuorum(_) => NO_QUORUM,
            ProposeError::Timeout(_) => TIMEOUT,
            ProposeError::Fatal(_) => RUNTIME_ERROR,
        };
        CallError::new(uri, e.to_string())
    }
}

/// A storage failure while reading: the disk or the file, never the caller's input.
impl From<StoreError> for CallError {
    fn from(e: StoreError) -> CallError {
        CallError::new(RUNTIME_ERROR, e.to_string())
    }
}

impl From<ReadError> for CallError {
    fn from(e: ReadError) -> CallError {
        match e {
            ReadError::NoQuorum(_) => CallError::new(NO_QUORUM, e.to_string()),
            ReadError::Store(e) => e.into(),
        }
    }
}

/// A stored record that does not decode as its type.
pub fn corrupt_record(e: serde_json::Error) -> CallError {
    CallError::new(RUNTIME_ERROR, format!("corrupt record: {e}"))
}

/// `wamp.error.invalid_argument` with a message saying what was wrong.
pub fn bad_argument(message: impl Into<String>) -> CallError {
    CallError::new(INVALID_ARGUMENT, message)
}

/// `crossbar.error.no_such_object`: "no {what}".
pub fn no_such(what: impl std::fmt::Display) -> CallError {
    CallError::new(NO_SUCH_OBJECT, format!("no {what}"))
}

/// `crossbar.error.no_such_object`: "no {kind} {id}".
pub fn no_such_object(kind: &str, id: impl std::fmt::Display) -> CallError {
    CallError::new(NO_SUCH_OBJECT, format!("no {kind} {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_error_is_not_reported_as_lost_quorum() {
        let e = ReadError::Store(StoreError::Snapshot("x".into()));
        assert_eq!(CallError::from(e).uri, RUNTIME_ERROR);
        let e = ReadError::NoQuorum("no leader".into());
        assert_eq!(CallError::from(e).uri, NO_QUORUM);
    }

    #[test]
    fn refusals_keep_their_uri_through_a_proposal() {
        let refusal = ApplyError::InvalidArgument("x".into());
        let direct = CallError::from(refusal.clone());
        let proposed = CallError::from(ProposeError::Refused(refusal));
        assert_eq!(direct.uri, INVALID_ARGUMENT);
        assert_eq!(direct, proposed);
        assert_eq!(CallError::from(ProposeError::Timeout(5)).uri, TIMEOUT);
    }
}
