//! Registrations and subscriptions by URI and match policy, shared by the dealer and the broker.

use std::collections::HashMap;

use crate::wamp::Id;
use crate::wamp::uri::MatchPolicy;

/// A registration or a subscription: a URI pattern with an ordered list of member sessions.
pub(crate) trait Entry {
    fn key(&self) -> (MatchPolicy, &str);
    fn members(&self) -> &Vec<Id>;
    fn members_mut(&mut self) -> &mut Vec<Id>;
}

/// What leaving an entry did.
pub(crate) enum Left {
    /// The session was not a member.
    NotMember,
    /// The session left; others remain.
    StillUsed,
    /// The session was the last member: the entry is gone from `entries` and the index.
    Deleted,
}

impl Left {
    pub fn was_member(&self) -> bool {
        !matches!(self, Left::NotMember)
    }
}

/// Takes session `sid` off entry `id`, deleting the entry when it was the last member.
pub(crate) fn leave<E: Entry>(
    entries: &mut HashMap<Id, E>,
    index: &mut UriIndex,
    id: Id,
    sid: Id,
) -> Left {
    let Some(entry) = entries.get_mut(&id) else {
        return Left::NotMember;
    };
    let before = entry.members().len();
    entry.members_mut().retain(|m| *m != sid);
    if entry.members().len() == before {
        return Left::NotMember;
    }
    if !entry.members().is_empty() {
        return Left::StillUsed;
    }
    if let Some(entry) = entries.remove(&id) {
        let (policy, uri) = entry.key();
        index.remove(policy, uri.to_owned());
    }
    Left::Deleted
}

/// Exact URIs are looked up without allocating (the hot path of every call and publication);
/// prefix and wildcard patterns are scanned.
#[derive(Default)]
pub(crate) struct UriIndex {
    exact: HashMap<String, Id>,
    patterns: HashMap<(MatchPolicy, String), Id>,
}

impl UriIndex {
    pub fn get(&self, policy: MatchPolicy, uri: &str) -> Option<Id> {
        match policy {
            MatchPolicy::Exact => self.exact.get(uri).copied(),
            p => self.patterns.get(&(p, uri.to_owned())).copied(),
        }
    }

    pub fn insert(&mut self, policy: MatchPolicy, uri: String, id: Id) {
        match policy {
            MatchPolicy::Exact => self.exact.insert(uri, id),
            p => self.patterns.insert((p, uri), id),
        };
    }

    pub fn remove(&mut self, policy: MatchPolicy, uri: String) {
        match policy {
            MatchPolicy::Exact => self.exact.remove(&uri),
            p => self.patterns.remove(&(p, uri)),
        };
    }

    /// Every entry whose pattern matches `uri` (a publication reaches all of them).
    pub fn all_matching(&self, uri: &str) -> Vec<Id> {
        let mut out: Vec<Id> = self.exact.get(uri).copied().into_iter().collect();
        out.extend(
            self.patterns
                .iter()
                .filter(|((p, pattern), _)| p.matches(pattern, uri))
                .map(|(_, id)| *id),
        );
        out
    }

    /// The one entry a call goes to: exact beats the longest prefix, which beats the most
    /// specific wildcard.
    pub fn best_match(&self, uri: &str) -> Option<Id> {
        if let Some(id) = self.exact.get(uri) {
            return Some(*id);
        }
        let mut best: Option<((u8, usize), Id)> = None;
        for ((policy, pattern), id) in &self.patterns {
            if !policy.matches(pattern, uri) {
                continue;
            }
            let rank = match policy {
                MatchPolicy::Prefix => (2, pattern.len()),
                _ => (1, pattern.split('.').filter(|c| !c.is_empty()).count()),
            };
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, *id));
            }
        }
        best.map(|(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_longest_prefix_then_wildcard() {
        let mut idx = UriIndex::default();
        idx.insert(MatchPolicy::Wildcard, "com..x".into(), 1);
        idx.insert(MatchPolicy::Prefix, "com.".into(), 2);
        idx.insert(MatchPolicy::Prefix, "com.a.".into(), 3);
        assert_eq!(idx.best_match("com.a.x"), Some(3));
        assert_eq!(idx.best_match("com.b.x"), Some(2));
        idx.insert(MatchPolicy::Exact, "com.b.x".into(), 4);
        assert_eq!(idx.best_match("com.b.x"), Some(4));
        let mut all = idx.all_matching("com.b.x");
        all.sort();
        assert_eq!(all, vec![1, 2, 4]);
        idx.remove(MatchPolicy::Exact, "com.b.x".into());
        assert_eq!(idx.get(MatchPolicy::Exact, "com.b.x"), None);
        assert_eq!(idx.get(MatchPolicy::Prefix, "com.a."), Some(3));
    }
}
