//! What a backend serving one management realm needs: the shared context, which mrealm it
//! serves, and a publisher on that mrealm's router realm.

use std::sync::Arc;

use super::{Ctx, Publisher};
use crate::router::internal::{CallError, Invocation};
use crate::store::Index;
use crate::store::model::User;

pub struct Scope {
    pub ctx: Arc<Ctx>,
    pub mrealm_oid: uuid::Uuid,
    pub mrealm_name: String,
    /// Publishes on the management realm itself.
    pub events: Publisher,
}

impl Scope {
    /// The key prefix of objects stored inside this management realm (`<mrealm oid>/`).
    pub fn key_prefix(&self) -> String {
        format!("{}/", self.mrealm_oid)
    }

    /// The key of an object `oid` stored inside this management realm.
    pub fn key(&self, oid: impl std::fmt::Display) -> String {
        format!("{}/{oid}", self.mrealm_oid)
    }

    /// The calling user's record (the superuser's is created by the global realm on first
    /// use), or `None` for sessions that are not users (nodes, backends).
    pub async fn caller_user(&self, inv: &Invocation) -> Result<Option<User>, CallError> {
        if matches!(inv.caller_authrole(), Some("node") | None) {
            return Ok(None);
        }
        let email = inv.caller_authid().unwrap_or_default();
        let r = self.ctx.replica.read().await?;
        r.lookup::<User>(Index::UserByEmail, email)
            .map_err(|e| CallError::new("wamp.error.runtime_error", e.to_string()))
    }
}
