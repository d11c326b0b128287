//! URI validation, with the strict and loose rules of the WAMP specification.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UriCheck {
    /// Components are any characters but whitespace, `.` and `#`.
    #[default]
    Loose,
    /// Components are `[0-9a-z_]+`.
    Strict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MatchPolicy {
    #[default]
    Exact,
    Prefix,
    Wildcard,
}

impl MatchPolicy {
    pub fn parse(s: &str) -> Option<MatchPolicy> {
        match s {
            "exact" => Some(MatchPolicy::Exact),
            "prefix" => Some(MatchPolicy::Prefix),
            "wildcard" => Some(MatchPolicy::Wildcard),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MatchPolicy::Exact => "exact",
            MatchPolicy::Prefix => "prefix",
            MatchPolicy::Wildcard => "wildcard",
        }
    }

    /// Does a registration/subscription URI `pattern` with this policy match `uri`?
    pub fn matches(self, pattern: &str, uri: &str) -> bool {
        match self {
            MatchPolicy::Exact => pattern == uri,
            MatchPolicy::Prefix => uri.starts_with(pattern),
            MatchPolicy::Wildcard => wildcard_matches(pattern, uri),
        }
    }
}

/// Empty components in `pattern` match any single component of `uri`.
pub fn wildcard_matches(pattern: &str, uri: &str) -> bool {
    let mut p = pattern.split('.');
    let mut u = uri.split('.');
    loop {
        match (p.next(), u.next()) {
            (None, None) => return true,
            (Some(pc), Some(uc)) => {
                if !pc.is_empty() && pc != uc {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn component_ok(c: &str, check: UriCheck) -> bool {
    match check {
        UriCheck::Loose => {
            !c.is_empty()
                && !c
                    .chars()
                    .any(|ch| ch.is_whitespace() || ch == '.' || ch == '#')
        }
        UriCheck::Strict => {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'_')
        }
    }
}

/// A URI used to call, publish, or name an error: every component non-empty.
pub fn is_valid_uri(uri: &str, check: UriCheck) -> bool {
    !uri.is_empty() && uri.split('.').all(|c| component_ok(c, check))
}

/// A URI pattern used to register or subscribe with the given match policy.
pub fn is_valid_pattern(uri: &str, policy: MatchPolicy, check: UriCheck) -> bool {
    match policy {
        MatchPolicy::Exact => is_valid_uri(uri, check),
        // A prefix may be empty (everything) or end in a dot.
        MatchPolicy::Prefix => {
            let body = uri.strip_suffix('.').unwrap_or(uri);
            body.is_empty() || is_valid_uri(body, check)
        }
        // Wildcard patterns allow empty components, but not all of them empty.
        MatchPolicy::Wildcard => {
            let mut any = false;
            for c in uri.split('.') {
                if c.is_empty() {
                    continue;
                }
                if !component_ok(c, check) {
                    return false;
                }
                any = true;
            }
            any || uri.contains('.')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_and_strict_rules() {
        assert!(is_valid_uri("com.myapp.Proc-1", UriCheck::Loose));
        assert!(!is_valid_uri("com.myapp.Proc-1", UriCheck::Strict));
        assert!(is_valid_uri("com.myapp.proc_1", UriCheck::Strict));
        for bad in ["", "com..x", ".com", "com.", "com.my app", "com.#x"] {
            assert!(
                !is_valid_uri(bad, UriCheck::Loose),
                "{bad:?} must be invalid"
            );
        }
    }

    #[test]
    fn patterns() {
        assert!(is_valid_pattern("", MatchPolicy::Prefix, UriCheck::Loose));
        assert!(is_valid_pattern(
            "com.example.",
            MatchPolicy::Prefix,
            UriCheck::Loose
        ));
        assert!(!is_valid_pattern(
            "com..example",
            MatchPolicy::Prefix,
            UriCheck::Loose
        ));
        assert!(is_valid_pattern(
            "com..on_event",
            MatchPolicy::Wildcard,
            UriCheck::Loose
        ));
        assert!(!is_valid_pattern(
            "com. .x",
            MatchPolicy::Wildcard,
            UriCheck::Loose
        ));
    }

    #[test]
    fn matching() {
        assert!(MatchPolicy::Wildcard.matches(
            "crossbarfabriccenter.node..on_shutdown",
            "crossbarfabriccenter.node.n1.on_shutdown"
        ));
        assert!(!MatchPolicy::Wildcard.matches("a..c", "a.b.c.d"));
        assert!(!MatchPolicy::Wildcard.matches("a..c", "a.b.d"));
        assert!(MatchPolicy::Prefix.matches("a.b", "a.bc"));
        assert!(MatchPolicy::Prefix.matches("", "anything"));
    }
}
