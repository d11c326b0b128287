//! Authentication: the router's `Authenticator` port implemented by the static part
//! (superuser keys, anonymous roles) and the state-backed authenticator (users with
//! activation codes, paired nodes) around it; Crossbar key files; activation mail.

pub mod keyfile;
pub mod limits;
pub mod mailer;
mod state_auth;
mod static_auth;

pub use crate::router::authenticator::{Authenticator, Decision, Denied, HelloRequest, Principal};
pub use state_auth::{StateAuthenticator, activation_code};
pub use static_auth::{AnonymousRealm, StaticAuthenticator};

/// The global realm of a Crossbar.io master.
pub const GLOBAL_REALM: &str = "com.crossbario.fabric";

/// Authids the master gives out itself: the superuser (configured keys only), its own
/// internal sessions, and anonymous sessions. No user may sign up or log in under one.
pub fn is_reserved_authid(authid: &str) -> bool {
    let lower = authid.to_ascii_lowercase();
    lower == "superuser" || lower == "fabric-master" || lower.starts_with("anonymous-")
}

/// An authid for an anonymous session, chosen by the master.
pub fn anonymous_authid() -> String {
    format!("anonymous-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_authids() {
        for a in [
            "superuser",
            "SuperUser",
            "fabric-master",
            "anonymous-1234abcd",
        ] {
            assert!(super::is_reserved_authid(a), "{a}");
        }
        for a in ["alice@example.com", "super.user@example.com", "node1"] {
            assert!(!super::is_reserved_authid(a), "{a}");
        }
        assert!(super::is_reserved_authid(&super::anonymous_authid()));
    }
}
