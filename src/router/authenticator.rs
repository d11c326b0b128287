//! What the router asks of an authenticator: who a HELLO speaks for. The router defines this
//! port and `auth` implements it, so the router never sees how identities are stored.

use futures_util::future::BoxFuture;

use crate::wamp::Dict;

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
    /// The role whose permissions govern the session when they are not its authrole's: the
    /// superuser is `user` on the wire, as in the reference, with the permissions of
    /// `superuser`.
    pub policy_role: Option<&'static str>,
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
