//! Authentication: the authenticator interface, cryptosign, key files, the static part
//! (superuser keys, anonymous roles) and the state-backed authenticator (users with
//! activation codes, paired nodes) around it.

pub mod cryptosign;
pub mod keyfile;
pub mod mailer;
mod state_auth;
mod static_auth;

use futures_util::future::BoxFuture;

use crate::wamp::Dict;
pub use state_auth::{StateAuthenticator, activation_code};
pub use static_auth::{AnonymousRealm, StaticAuthenticator};

/// The global realm of a Crossbar.io master.
pub const GLOBAL_REALM: &str = "com.crossbario.fabric";

/// What a client asked for in its HELLO.
#[derive(Clone, Debug)]
pub struct HelloRequest {
    pub realm: Option<String>,
    pub authid: Option<String>,
    pub authrole: Option<String>,
    pub authmethods: Vec<String>,
    pub authextra: Dict,
    /// Transport peer, e.g. `tcp4:127.0.0.1:41234`.
    pub peer: String,
}

/// Who a session will be once it is welcomed.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    pub realm: String,
    pub authid: String,
    pub authrole: String,
    pub authmethod: &'static str,
    pub authprovider: &'static str,
    pub authextra: Dict,
}

/// The authenticator's answer: a principal, and for cryptosign the key the client must prove.
#[derive(Clone, Debug)]
pub struct Decision {
    pub principal: Principal,
    pub cryptosign_key: Option<ed25519_dalek::VerifyingKey>,
}

/// A refusal: sent to the client as ABORT with `uri` as reason and `message` in details.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{uri}: {message}")]
pub struct Denied {
    pub uri: String,
    pub message: String,
}

impl Denied {
    pub fn new(uri: &str, message: impl Into<String>) -> Denied {
        Denied {
            uri: uri.to_owned(),
            message: message.into(),
        }
    }
}

/// Decides who a connecting client is. Realm and role existence are checked by the router
/// afterwards, so an authenticator only speaks for identities.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        hello: &'a HelloRequest,
    ) -> BoxFuture<'a, Result<Decision, Denied>>;
}
