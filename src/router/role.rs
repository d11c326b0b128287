//! Roles and their permission rules, checked on every action a session takes.

use serde::Deserialize;

use crate::wamp::uri::MatchPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Call,
    Register,
    Publish,
    Subscribe,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Call => "call",
            Action::Register => "register",
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
        }
    }
}

/// One rule of a role, as in Crossbar's static role configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Permission {
    pub uri: String,
    #[serde(rename = "match", with = "match_policy")]
    pub policy: MatchPolicy,
    pub call: bool,
    pub register: bool,
    pub publish: bool,
    pub subscribe: bool,
    pub disclose_caller: bool,
    pub disclose_publisher: bool,
}

impl Permission {
    /// Everything below `prefix`, with caller and publisher disclosure.
    pub fn all(prefix: &str) -> Permission {
        Permission {
            uri: prefix.to_owned(),
            policy: MatchPolicy::Prefix,
            call: true,
            register: true,
            publish: true,
            subscribe: true,
            disclose_caller: true,
            disclose_publisher: true,
        }
    }

    pub fn allows(&self, action: Action) -> bool {
        match action {
            Action::Call => self.call,
            Action::Register => self.register,
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

impl Role {
    /// The rule that governs `uri`: an exact rule wins, then the longest prefix, then the most
    /// specific wildcard. No rule means nothing is allowed.
    pub fn rule_for(&self, uri: &str) -> Option<&Permission> {
        self.rule_for_session(uri, "")
    }

    /// As `rule_for`, with `{authid}` in a rule's URI standing for the session's authid (a
    /// node may only act below its own `crossbarfabriccenter.node.<authid>.`).
    pub fn rule_for_session(&self, uri: &str, authid: &str) -> Option<&Permission> {
        let mut best: Option<(&Permission, (u8, usize))> = None;
        for p in &self.permissions {
            let pattern = if p.uri.contains(AUTHID_PLACEHOLDER) {
                std::borrow::Cow::Owned(p.uri.replace(AUTHID_PLACEHOLDER, authid))
            } else {
                std::borrow::Cow::Borrowed(p.uri.as_str())
            };
            if !p.policy.matches(&pattern, uri) {
                continue;
            }
            let rank = match p.policy {
                MatchPolicy::Exact => (3, usize::MAX),
                MatchPolicy::Prefix => (2, pattern.len()),
                MatchPolicy::Wildcard => (1, p.uri.split('.').filter(|c| !c.is_empty()).count()),
            };
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((p, rank));
            }
        }
        best.map(|(p, _)| p)
    }

    pub fn authorize(&self, uri: &str, action: Action) -> Option<&Permission> {
        self.rule_for(uri).filter(|p| p.allows(action))
    }

    pub fn authorize_session(
        &self,
        uri: &str,
        action: Action,
        authid: &str,
    ) -> Option<&Permission> {
        self.rule_for_session(uri, authid)
            .filter(|p| p.allows(action))
    }
}

/// Stands for the session's authid in a rule's URI.
pub const AUTHID_PLACEHOLDER: &str = "{authid}";

mod match_policy {
    use serde::{Deserialize, Deserializer};

    use crate::wamp::uri::MatchPolicy;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MatchPolicy, D::Error> {
        let s = String::deserialize(d)?;
        MatchPolicy::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown match policy {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let role = Role {
            name: "r".into(),
            permissions: vec![
                Permission::all(""),
                Permission {
                    uri: "com.x.".into(),
                    policy: MatchPolicy::Prefix,
                    call: false,
                    ..Default::default()
                },
                Permission {
                    uri: "com.x.open".into(),
                    policy: MatchPolicy::Exact,
                    call: true,
                    ..Default::default()
                },
            ],
        };
        assert!(role.authorize("com.y", Action::Call).is_some());
        assert!(role.authorize("com.x.closed", Action::Call).is_none());
        assert!(role.authorize("com.x.open", Action::Call).is_some());
        assert!(role.authorize("com.x.open", Action::Publish).is_none());
    }

    #[test]
    fn authid_placeholder_limits_a_session_to_its_own_prefix() {
        let role = Role {
            name: "node".into(),
            permissions: vec![Permission::all("crossbarfabriccenter.node.{authid}.")],
        };
        let uri = "crossbarfabriccenter.node.node1.get_status";
        assert!(
            role.authorize_session(uri, Action::Register, "node1")
                .is_some()
        );
        assert!(
            role.authorize_session(uri, Action::Register, "node2")
                .is_none()
        );
        assert!(role.authorize(uri, Action::Register).is_none());
    }

    #[test]
    fn no_rule_means_denied() {
        let role = Role {
            name: "public".into(),
            permissions: vec![],
        };
        assert!(role.authorize("anything", Action::Subscribe).is_none());
    }
}
