//! Error and close reason URIs used by the router.

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

pub const CLOSE_NORMAL: &str = "wamp.close.normal";
pub const CLOSE_GOODBYE_AND_OUT: &str = "wamp.close.goodbye_and_out";
pub const CLOSE_SYSTEM_SHUTDOWN: &str = "wamp.close.system_shutdown";
pub const CLOSE_KILLED: &str = "wamp.close.killed";
