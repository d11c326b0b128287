//! Authentication: the router's `Authenticator` port implemented by the static part
//! (superuser keys, anonymous roles) and the state-backed authenticator (users with
//! activation codes, paired nodes) around it; Crossbar key files; activation mail.

pub mod keyfile;
pub mod mailer;
mod state_auth;
mod static_auth;

pub use crate::router::authenticator::{Authenticator, Decision, Denied, HelloRequest, Principal};
pub use state_auth::{StateAuthenticator, activation_code};
pub use static_auth::{AnonymousRealm, StaticAuthenticator};

/// The global realm of a Crossbar.io master.
pub const GLOBAL_REALM: &str = "com.crossbario.fabric";
