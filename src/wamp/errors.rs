//! Every error and close reason URI the master answers with, in one table: WAMP's own, then
//! Crossbar.io's and the master's (spec §9). Names are distinct: `NOT_AUTHORIZED` is WAMP's,
//! `FABRIC_NOT_AUTHORIZED` the master's.

pub const INVALID_URI: &str = "wamp.error.invalid_uri";
pub const NO_SUCH_PROCEDURE: &str = "wamp.error.no_such_procedure";
pub const PROCEDURE_ALREADY_EXISTS: &str = "wamp.error.procedure_already_exists";
pub const NO_SUCH_REGISTRATION: &str = "wamp.error.no_such_registration";
pub const NO_SUCH_SUBSCRIPTION: &str = "wamp.error.no_such_subscription";
pub const NO_SUCH_SESSION: &str = "wamp.error.no_such_session";
pub const INVALID_ARGUMENT: &str = "wamp.error.invalid_argument";
pub const NOT_AUTHORIZED: &str = "wamp.error.not_authorized";
pub const AUTHORIZATION_FAILED: &str = "wamp.error.authorization_failed";
pub const AUTHENTICATION_FAILED: &str = "wamp.error.authentication_failed";
pub const NO_SUCH_REALM: &str = "wamp.error.no_such_realm";
pub const NO_SUCH_ROLE: &str = "wamp.error.no_such_role";
pub const NO_AUTH_METHOD: &str = "wamp.error.no_auth_method";
pub const CANCELED: &str = "wamp.error.canceled";
pub const TIMEOUT: &str = "wamp.error.timeout";
pub const OPTION_NOT_ALLOWED: &str = "wamp.error.option_not_allowed";
pub const PROTOCOL_VIOLATION: &str = "wamp.error.protocol_violation";
pub const RUNTIME_ERROR: &str = "wamp.error.runtime_error";
pub const UNAVAILABLE: &str = "wamp.error.unavailable";
pub const INVALID_CONFIGURATION: &str = "wamp.error.invalid_configuration";

// Crossbar.io's object errors (spec §9).
pub const NO_SUCH_OBJECT: &str = "crossbar.error.no_such_object";
pub const ALREADY_EXISTS: &str = "crossbar.error.already_exists";
pub const DEPENDENT_OBJECTS: &str = "crossbar.error.dependent_objects";
pub const NOT_STOPPED: &str = "crossbar.error.not_stopped";
pub const CANNOT_START: &str = "crossbar.error.cannot_start";
pub const CANNOT_STOP: &str = "crossbar.error.cannot_stop";
pub const ALREADY_RUNNING: &str = "crossbar.error.already_running";
pub const NO_SUCH_WORKER: &str = "crossbar.error.no_such_worker";
pub const INVALID_CONFIG: &str = "crossbar.error.invalid_config";

// The master's own.
pub const FABRIC_NOT_AUTHORIZED: &str = "fabric.not-authorized";
/// A session holds as many pending calls, registrations or subscriptions as it may.
pub const LIMIT_EXCEEDED: &str = "fabric.error.limit-exceeded";
pub const NO_QUORUM: &str = "fabric.error.no-quorum";
pub const NODE_ALREADY_PAIRED: &str = "fabric.node-already-paired";
pub const NODE_NOT_PAIRED: &str = "fabric.node-not-paired";
// Why the master refuses a HELLO (ABORT reasons of the reference master's authenticators).
pub const AUTH_INVALID_PARAMETERS: &str = "fabric.auth-failed.invalid-parameters";
pub const AUTH_INVALID_CODE: &str = "fabric.auth-failed.invalid-activation-code";
pub const AUTH_EMAIL_FAILURE: &str = "fabric.auth-failed.email-failure";
pub const AUTH_NODE_UNPAIRED: &str = "fabric.auth-failed.node-unpaired";
pub const AUTH_NO_PENDING_ACTIVATION: &str = "fabric.auth-failed.no-pending-activation";
pub const AUTH_PENDING_ACTIVATION: &str = "fabric.auth-failed.pending-activation";
pub const AUTH_REGISTERED_USER_CODE_SENT: &str =
    "fabric.auth-failed.registered-user-auth-code-sent";
pub const AUTH_NEW_USER_CODE_SENT: &str = "fabric.auth-failed.new-user-auth-code-sent";
pub const AUTH_UNKNOWN_KEY: &str = "fabric.auth-failed.unknown-key";
/// Too many HELLOs from one source (`auth::limits`).
pub const AUTH_RATE_LIMITED: &str = "fabric.auth-failed.rate-limited";

pub const CLOSE_NORMAL: &str = "wamp.close.normal";
pub const CLOSE_GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
pub const CLOSE_SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
pub const CLOSE_KILLED: &str = "wamp.close.killed";
