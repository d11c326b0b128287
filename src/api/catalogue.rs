//! The management realms as of an applied log index. `list_mrealms` is the hottest global
//! call; it reuses this until the state changes instead of decoding every realm record on
//! every call.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::replica::Replica;
use crate::store::StoreError;
use crate::store::model::ManagementRealm;
use crate::wamp::Value;

pub struct Listing {
    applied: Option<u64>,
    pub realms: Vec<ManagementRealm>,
    /// The answers for the superuser, ready to send: sorted oids and sorted names.
    pub oids: Value,
    pub names: Value,
}

#[derive(Default)]
pub struct Catalogue {
    cached: Mutex<Option<Arc<Listing>>>,
}

impl Catalogue {
    /// The realms in this replica's state (linearize first for a linearizable answer).
    pub fn get(&self, replica: &Replica) -> Result<Arc<Listing>, StoreError> {
        // Read before the state: a listing built from a newer state than `applied` is only
        // reused while nothing else was applied, so it is never older than what it claims.
        let applied = replica
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index);
        if let Some(l) = self.cached.lock().as_ref()
            && l.applied == applied
        {
            return Ok(l.clone());
        }
        let realms: Vec<ManagementRealm> = replica.reader()?.list("")?;
        let sorted = |f: fn(&ManagementRealm) -> String| {
            let mut v: Vec<String> = realms.iter().map(f).collect();
            v.sort();
            Value::List(v.into_iter().map(Value::from).collect())
        };
        let listing = Arc::new(Listing {
            applied,
            oids: sorted(|m| m.oid.to_string()),
            names: sorted(|m| m.name.clone()),
            realms,
        });
        *self.cached.lock() = Some(listing.clone());
        Ok(listing)
    }
}
