//! Server configuration: a TOML file, overridden by environment variables and flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::GLOBAL_REALM;
use crate::router::{RealmSpec, Role};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("realm \"{realm}\": {problem}")]
    Realm { realm: String, problem: String },
}

/// The config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub superuser: Vec<PathBuf>,
    pub node_name: Option<String>,
    pub max_message_size: Option<usize>,
    pub ping_interval_ms: Option<u64>,
    pub ping_timeout_ms: Option<u64>,
    pub hello_timeout_ms: Option<u64>,
    pub call_timeout_ms: Option<u64>,
    pub outbox_capacity: Option<usize>,
    /// Bytes that may wait for one slow session before it is dropped.
    pub max_outbound_bytes: Option<usize>,
    /// Bytes that may wait for all sessions of a replica together.
    pub max_outbound_bytes_total: Option<usize>,
    /// Bytes that may wait for all sessions of one realm together.
    pub max_outbound_bytes_realm: Option<usize>,
    /// Calls one session may have waiting for their results.
    pub max_pending_calls: Option<usize>,
    /// Registrations one session may hold.
    pub max_registrations: Option<usize>,
    /// Subscriptions one session may hold.
    pub max_subscriptions: Option<usize>,
    /// SMTP transport for activation codes, e.g. `smtps://user:pass@mail.example.com:465`.
    pub smtp_url: Option<String>,
    /// Sender of activation mails, e.g. `Fabric Master <noreply@example.com>`.
    pub smtp_from: Option<String>,
    /// Certificate chain (PEM) for WebSocket over TLS; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    pub realms: Vec<RealmConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    pub name: String,
    /// Role given to anonymous sessions; without it, anonymous sessions are refused.
    pub anonymous_role: Option<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Roles only the master's own sessions hold (not configurable).
    #[serde(skip)]
    pub internal_roles: Vec<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source: Box::new(source),
        })
    }
}

impl RealmConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |problem: String| ConfigError::Realm {
            realm: self.name.clone(),
            problem,
        };
        if !crate::wamp::uri::is_valid_uri(&self.name, crate::wamp::uri::UriCheck::Loose) {
            return Err(err("the name is not a valid URI".into()));
        }
        if let Some(anon) = &self.anonymous_role
            && !self.roles.iter().any(|r| &r.name == anon)
        {
            return Err(err(format!(
                "anonymous_role \"{anon}\" is not one of its roles"
            )));
        }
        Ok(())
    }

    pub fn spec(&self) -> RealmSpec {
        RealmSpec {
            name: self.name.clone(),
            roles: self.roles.clone(),
            internal_roles: self.internal_roles.clone(),
        }
    }
}

/// The global realm `com.crossbario.fabric`, its roles from the authorization table.
pub fn global_realm() -> RealmConfig {
    RealmConfig {
        name: GLOBAL_REALM.to_owned(),
        anonymous_role: Some("public".to_owned()),
        roles: crate::authz::GLOBAL.roles(),
        internal_roles: crate::authz::GLOBAL.internal_roles(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wamp::uri::MatchPolicy;

    #[test]
    fn parses_realms_with_roles() {
        let cfg: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:9100"
            [[realms]]
            name = "realm1"
            anonymous_role = "guest"
            [[realms.roles]]
            name = "guest"
            [[realms.roles.permissions]]
            uri = "com.example."
            match = "prefix"
            call = true
            "#,
        )
        .unwrap();
        assert_eq!(cfg.listen.unwrap().port(), 9100);
        let realm = &cfg.realms[0];
        realm.validate().unwrap();
        let p = &realm.roles[0].permissions[0];
        assert!(p.call && !p.register && p.policy == MatchPolicy::Prefix);
    }

    #[test]
    fn unknown_keys_and_dangling_anonymous_roles_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        let realm = RealmConfig {
            name: "r".into(),
            anonymous_role: Some("ghost".into()),
            roles: vec![],
            internal_roles: vec![],
        };
        assert!(realm.validate().is_err());
    }
}
