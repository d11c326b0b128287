//! Applying commands to the state tables inside one write transaction.
//!
//! Long because the deterministic apply is one match over every command: replicas must
//! agree byte for byte, and one function makes every rule visible at once.
//!
//! Every operation validates first and writes second, so a refused command leaves no trace
//! and the rest of the batch commits.

use redb::{ReadableTable, WriteTransaction};
use serde_json::Value as Json;

use super::command::{AnyRecord, Command, StatusRule};
use super::model::*;
use super::{Applied, ApplyError, Index, Kind, StoreError, prefix_end};

/// Calls `$body` with `$R` bound to the record type of `$kind`.
macro_rules! with_kind {
    ($kind:expr, $R:ident => $body:expr) => {
        match $kind {
            Kind::Organization => {
                type $R = Organization;
                $body
            }
            Kind::User => {
                type $R = User;
                $body
            }
            Kind::ActivationToken => {
                type $R = ActivationToken;
                $body
            }
            Kind::ManagementRealm => {
                type $R = ManagementRealm;
                $body
            }
            Kind::UserMrealmRole => {
                type $R = UserMrealmRole;
                $body
            }
            Kind::UserOrganizationRole => {
                type $R = UserOrganizationRole;
                $body
            }
            Kind::Node => {
                type $R = Node;
                $body
            }
            Kind::ApplicationRealm => {
                type $R = ApplicationRealm;
                $body
            }
            Kind::Role => {
                type $R = Role;
                $body
            }
            Kind::Permission => {
                type $R = Permission;
                $body
            }
            Kind::Principal => {
                type $R = Principal;
                $body
            }
            Kind::Credential => {
                type $R = Credential;
                $body
            }
            Kind::ArealmRoleAssociation => {
                type $R = ArealmRoleAssociation;
                $body
            }
            Kind::RouterCluster => {
                type $R = RouterCluster;
                $body
            }
            Kind::RouterClusterNodeMembership => {
                type $R = RouterClusterNodeMembership;
                $body
            }
            Kind::RouterWorkerGroup => {
                type $R = RouterWorkerGroup;
                $body
            }
            Kind::RouterWorkerGroupClusterPlacement => {
                type $R = RouterWorkerGroupClusterPlacement;
                $body
            }
            Kind::WebCluster => {
                type $R = WebCluster;
                $body
            }
            Kind::WebClusterNodeMembership => {
                type $R = WebClusterNodeMembership;
                $body
            }
            Kind::WebService => {
                type $R = WebService;
                $body
            }
            Kind::Trace => {
                type $R = Trace;
                $body
            }
            Kind::Presence => {
                type $R = Presence;
                $body
            }
            Kind::Docs => {
                type $R = Docs;
                $body
            }
        }
    };
}

macro_rules! with_record {
    ($any:expr, $r:ident => $body:expr) => {
        match $any {
            AnyRecord::Organization($r) => $body,
            AnyRecord::User($r) => $body,
            AnyRecord::ActivationToken($r) => $body,
            AnyRecord::ManagementRealm($r) => $body,
            AnyRecord::UserMrealmRole($r) => $body,
            AnyRecord::UserOrganizationRole($r) => $body,
            AnyRecord::Node($r) => $body,
            AnyRecord::ApplicationRealm($r) => $body,
            AnyRecord::Role($r) => $body,
            AnyRecord::Permission($r) => $body,
            AnyRecord::Principal($r) => $body,
            AnyRecord::Credential($r) => $body,
            AnyRecord::ArealmRoleAssociation($r) => $body,
            AnyRecord::RouterCluster($r) => $body,
            AnyRecord::RouterClusterNodeMembership($r) => $body,
            AnyRecord::RouterWorkerGroup($r) => $body,
            AnyRecord::RouterWorkerGroupClusterPlacement($r) => $body,
            AnyRecord::WebCluster($r) => $body,
            AnyRecord::WebClusterNodeMembership($r) => $body,
            AnyRecord::WebService($r) => $body,
            AnyRecord::Trace($r) => $body,
            AnyRecord::Presence($r) => $body,
            AnyRecord::Docs($r) => $body,
        }
    };
}

/// Kinds whose keys start with `<mrealm oid>/`: deleting a realm deletes them by range.
const SCOPED: [Kind; 16] = [
    Kind::UserMrealmRole,
    Kind::ApplicationRealm,
    Kind::Role,
    Kind::Permission,
    Kind::Principal,
    Kind::Credential,
    Kind::ArealmRoleAssociation,
    Kind::RouterCluster,
    Kind::RouterClusterNodeMembership,
    Kind::RouterWorkerGroup,
    Kind::RouterWorkerGroupClusterPlacement,
    Kind::WebCluster,
    Kind::WebClusterNodeMembership,
    Kind::WebService,
    Kind::Trace,
    Kind::Docs,
];

/// States from which an object may be deleted or reconfigured.
const STOPPED: [&str; 2] = ["STOPPED", "NONE"];

enum Fail {
    Refused(ApplyError),
    Store(StoreError),
}

impl From<ApplyError> for Fail {
    fn from(e: ApplyError) -> Self {
        Fail::Refused(e)
    }
}

impl<E: Into<StoreError>> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail::Store(e.into())
    }
}

type Step<T> = Result<T, Fail>;

/// Applies one command. `Ok(Err(_))` is a refusal; `Err(_)` is a storage failure.
pub fn apply(txn: &WriteTransaction, cmd: &Command) -> Result<Applied, StoreError> {
    let tx = Tx { txn };
    match tx.command(cmd) {
        Ok(v) => Ok(Ok(v)),
        Err(Fail::Refused(e)) => Ok(Err(e)),
        Err(Fail::Store(e)) => Err(e),
    }
}

/// What an applied insert or upsert answered: the record it carries.
fn own_record(command: &Command) -> Json {
    match command {
        Command::Insert { record } | Command::Upsert { record } => {
            with_record!(record, r => to_json(r))
        }
        _ => Json::Null,
    }
}

fn to_json<R: Record>(r: &R) -> Json {
    serde_json::to_value(r).expect("records serialize")
}

fn decode<R: Record>(bytes: &[u8]) -> Result<R, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table: R::KIND.name(),
        source,
    })
}

/// What a delete removes: objects (parents before children) and nodes it unpairs.
#[derive(Default)]
struct Plan {
    erase: Vec<(Kind, String)>,
    unpair: Vec<String>,
}

struct Tx<'a> {
    txn: &'a WriteTransaction,
}

impl Tx<'_> {
    /// `command` under proposal `id`: the remembered answer if `id` was applied before
    /// (nothing changes), else the command's answer, remembered (`store/once.rs`).
    fn once(&self, id: &str, at_ms: Option<u64>, command: &Command) -> Step<Json> {
        if matches!(command, Command::Once { .. }) || id.is_empty() || id.starts_with('#') {
            return Err(Fail::Refused(ApplyError::InvalidArgument(
                "a proposal id must be non-empty, not start with #, and wrap one command".into(),
            )));
        }
        match super::once::recall(self.txn, id)? {
            Some(super::once::Recalled::Answer(answer)) => return answer.map_err(Fail::Refused),
            Some(super::once::Recalled::OwnRecord) => return Ok(own_record(command)),
            None => {}
        }
        let answer = match self.command(command) {
            Ok(v) => Ok(v),
            Err(Fail::Refused(e)) => Err(e),
            Err(Fail::Store(e)) => return Err(Fail::Store(e)),
        };
        // An insert or upsert answers with the record it carries: no need to store it again.
        let own =
            answer.is_ok() && matches!(command, Command::Insert { .. } | Command::Upsert { .. });
        super::once::remember(self.txn, id, at_ms, (!own).then_some(&answer))?;
        answer.map_err(Fail::Refused)
    }

    fn command(&self, cmd: &Command) -> Step<Json> {
        match cmd {
            Command::Insert { record } => with_record!(record, r => self.insert(r)),
            Command::Upsert { record } => with_record!(record, r => self.upsert(r)),
            Command::Modify {
                kind,
                key,
                delta,
                status_rule,
            } => with_kind!(kind, R => self.modify::<R>(key, delta, status_rule.as_ref())),
            Command::Delete { kind, key, cascade } => self.delete(*kind, key, *cascade),
            Command::Purge { kind, key } => self.purge(*kind, key),
            Command::Once { id, at_ms, command } => self.once(id, *at_ms, command),
            Command::IssueActivationToken { token } => {
                let lookup = ActivationToken::lookup_key(&token.email, &token.pubkey);
                let old = self.lookup::<ActivationToken>(Index::TokenByEmailPubkey, &lookup)?;
                let replaces_itself = old.as_ref().is_some_and(|o| o.key() == token.key());
                if !replaces_itself && self.exists(Kind::ActivationToken, &token.key())? {
                    return Err(ApplyError::Duplicate {
                        kind: Kind::ActivationToken,
                        key: token.key(),
                    }
                    .into());
                }
                if let Some(old) = old {
                    self.erase(&old)?;
                }
                self.write(token)?;
                Ok(to_json(token))
            }
            Command::ActivateToken {
                token_oid,
                completed,
                new_user,
            } => self.activate_token(token_oid, *completed, new_user.as_ref()),
            Command::PairNode { node } => self.pair_node(node),
            Command::UnpairNode { oid } => self.unpair_node(oid),
            Command::AddWorkerGroup { group, placements } => {
                self.check_new(group, None)?;
                let mut keys = std::collections::HashSet::new();
                for p in placements {
                    if p.worker_group_oid != group.oid
                        || p.cluster_oid != group.cluster_oid
                        || p.mrealm_oid != group.mrealm_oid
                    {
                        return Err(ApplyError::InvalidArgument(
                            "placement does not belong to the worker group".into(),
                        )
                        .into());
                    }
                    self.check_unique_and_key(p, None)?;
                    self.check_parent(Kind::Node, &p.node_oid.to_string())?;
                    if !keys.insert(p.key()) {
                        return Err(ApplyError::Duplicate {
                            kind: Kind::RouterWorkerGroupClusterPlacement,
                            key: p.key(),
                        }
                        .into());
                    }
                }
                self.write(group)?;
                for p in placements {
                    self.write(p)?;
                }
                Ok(to_json(group))
            }
            Command::PresenceJoin { presence } => {
                let node = self
                    .get::<Node>(&presence.node_oid.to_string())?
                    .ok_or_else(|| ApplyError::NoSuchObject {
                        kind: Kind::Node,
                        key: presence.node_oid.to_string(),
                    })?;
                if node.mrealm_oid != Some(presence.mrealm_oid) {
                    return Err(ApplyError::NodeNotPaired {
                        key: presence.node_oid.to_string(),
                    }
                    .into());
                }
                if let Some(old) = self.get::<Presence>(&presence.key())? {
                    self.erase(&old)?;
                }
                self.write(presence)?;
                Ok(to_json(presence))
            }
            Command::PresenceLeave {
                node_oid,
                session_id,
            } => match self.get::<Presence>(&node_oid.to_string())? {
                Some(p) if p.session_id == *session_id => {
                    self.erase(&p)?;
                    Ok(Json::Bool(true))
                }
                _ => Ok(Json::Bool(false)),
            },
            Command::PresenceDropReplica { replica_id } => {
                let keys =
                    self.index_scan(Index::PresenceByReplica, &format!("{replica_id:020}/"))?;
                for (_, pk) in &keys {
                    if let Some(p) = self.get::<Presence>(pk)? {
                        self.erase(&p)?;
                    }
                }
                Ok(Json::from(keys.len()))
            }
            Command::PresenceDropStale {
                replica_id,
                joined_before,
                current_run,
            } => {
                let keys =
                    self.index_scan(Index::PresenceByReplica, &format!("{replica_id:020}/"))?;
                let mut dropped = 0u64;
                for (_, pk) in &keys {
                    let stale = |p: &Presence| match current_run {
                        Some(run) => p.run != *run,
                        None => p.since < *joined_before,
                    };
                    if let Some(p) = self.get::<Presence>(pk)?
                        && stale(&p)
                    {
                        self.erase(&p)?;
                        dropped += 1;
                    }
                }
                Ok(Json::from(dropped))
            }
        }
    }

    // ---- reads -------------------------------------------------------------------------

    fn get<R: Record>(&self, key: &str) -> Step<Option<R>> {
        let table = self.txn.open_table(R::KIND.table())?;
        let found = table.get(key)?;
        Ok(match found {
            Some(v) => Some(decode(v.value())?),
            None => None,
        })
    }

    fn exists(&self, kind: Kind, key: &str) -> Step<bool> {
        let table = self.txn.open_table(kind.table())?;
        Ok(table.get(key)?.is_some())
    }

    fn index_get(&self, index: Index, ikey: &str) -> Step<Option<String>> {
        let table = self.txn.open_table(index.table())?;
        let found = table.get(ikey)?;
        Ok(found.map(|v| v.value().to_string()))
    }

    fn lookup<R: Record>(&self, index: Index, ikey: &str) -> Step<Option<R>> {
        match self.index_get(index, ikey)? {
            Some(pk) => self.get::<R>(&pk),
            None => Ok(None),
        }
    }

    fn index_scan(&self, index: Index, prefix: &str) -> Step<Vec<(String, String)>> {
        let table = self.txn.open_table(index.table())?;
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        for item in table.range(prefix..end.as_str())? {
            let (k, v) = item?;
            out.push((k.value().to_string(), v.value().to_string()));
        }
        Ok(out)
    }

    fn scan_json(&self, kind: Kind, prefix: &str) -> Step<Vec<(String, Json)>> {
        let table = self.txn.open_table(kind.table())?;
        Ok(super::range_json(&table, kind, prefix)?)
    }

    // ---- checks ------------------------------------------------------------------------

    fn check_parent(&self, kind: Kind, key: &str) -> Step<()> {
        if self.exists(kind, key)? {
            Ok(())
        } else {
            Err(ApplyError::NoSuchObject {
                kind,
                key: key.to_string(),
            }
            .into())
        }
    }

    /// Unique lookups must be free or already point at this object's own key.
    fn check_unique_and_key<R: Record>(&self, r: &R, replacing: Option<&R>) -> Step<()> {
        let key = r.key();
        if replacing.is_none() && self.exists(R::KIND, &key)? {
            return Err(ApplyError::Duplicate { kind: R::KIND, key }.into());
        }
        for (index, ikey) in r.unique() {
            if let Some(owner) = self.index_get(index, &ikey)?
                && owner != key
            {
                return Err(ApplyError::AlreadyExists {
                    kind: R::KIND,
                    index,
                    value: ikey,
                }
                .into());
            }
        }
        Ok(())
    }

    fn check_new<R: Record>(&self, r: &R, replacing: Option<&R>) -> Step<()> {
        for (kind, key) in r.parents() {
            self.check_parent(kind, &key)?;
        }
        self.check_unique_and_key(r, replacing)
    }

    // ---- writes ------------------------------------------------------------------------

    fn write<R: Record>(&self, r: &R) -> Step<()> {
        let key = r.key();
        let bytes = serde_json::to_vec(r).expect("records serialize");
        self.txn
            .open_table(R::KIND.table())?
            .insert(key.as_str(), bytes.as_slice())?;
        for (index, ikey) in r.unique() {
            self.txn
                .open_table(index.table())?
                .insert(ikey.as_str(), key.as_str())?;
        }
        Ok(())
    }

    fn erase<R: Record>(&self, r: &R) -> Step<()> {
        let key = r.key();
        self.txn.open_table(R::KIND.table())?.remove(key.as_str())?;
        for (index, ikey) in r.unique() {
            self.txn.open_table(index.table())?.remove(ikey.as_str())?;
        }
        Ok(())
    }

    fn erase_key(&self, kind: Kind, key: &str) -> Step<()> {
        with_kind!(kind, R => {
            if let Some(r) = self.get::<R>(key)? {
                self.erase(&r)?;
            }
            Ok(())
        })
    }

    // ---- commands ----------------------------------------------------------------------

    fn insert<R: Record>(&self, r: &R) -> Step<Json> {
        self.check_new(r, None)?;
        self.write(r)?;
        Ok(to_json(r))
    }

    fn upsert<R: Record>(&self, r: &R) -> Step<Json> {
        let old = self.get::<R>(&r.key())?;
        self.check_new(r, old.as_ref())?;
        if let Some(old) = &old {
            self.erase(old)?;
        }
        self.write(r)?;
        Ok(to_json(r))
    }

    fn modify<R: Record>(
        &self,
        key: &str,
        delta: &Extra,
        status_rule: Option<&StatusRule>,
    ) -> Step<Json> {
        let old = self
            .get::<R>(key)?
            .ok_or_else(|| ApplyError::NoSuchObject {
                kind: R::KIND,
                key: key.to_string(),
            })?;
        let mut json = to_json(&old);
        if let Some(rule) = status_rule {
            let status = json
                .get("status")
                .and_then(Json::as_str)
                .unwrap_or("NONE")
                .to_string();
            let (kind, key) = (R::KIND, key.to_string());
            let refusal = match rule {
                StatusRule::StartFrom(allowed) if !allowed.contains(&status) => {
                    Some(ApplyError::CannotStart { kind, key, status })
                }
                StatusRule::StopFrom(allowed) if !allowed.contains(&status) => {
                    Some(ApplyError::CannotStop { kind, key, status })
                }
                _ => None,
            };
            if let Some(e) = refusal {
                return Err(e.into());
            }
        }
        if R::KIND == Kind::Node
            && let Some(field) = ["mrealm_oid", "authid", "pubkey"]
                .into_iter()
                .find(|f| delta.contains_key(*f))
        {
            return Err(ApplyError::InvalidArgument(format!(
                "{field} of a node changes only by pairing"
            ))
            .into());
        }
        let obj = json.as_object_mut().expect("records are objects");
        for (k, v) in delta {
            obj.insert(k.clone(), v.clone());
        }
        let new: R = serde_json::from_value(json)
            .map_err(|e| ApplyError::InvalidArgument(format!("invalid {}: {e}", R::KIND)))?;
        if new.key() != old.key() {
            return Err(ApplyError::InvalidArgument(format!(
                "the key fields of a {} cannot be modified",
                R::KIND
            ))
            .into());
        }
        self.check_new(&new, Some(&old))?;
        self.erase(&old)?;
        self.write(&new)?;
        Ok(to_json(&new))
    }

    fn activate_token(
        &self,
        token_oid: &Oid,
        completed: i64,
        new_user: Option<&User>,
    ) -> Step<Json> {
        let mut token = self
            .get::<ActivationToken>(&token_oid.to_string())?
            .ok_or_else(|| ApplyError::NoSuchObject {
                kind: Kind::ActivationToken,
                key: token_oid.to_string(),
            })?;
        if token.status != TOKEN_PENDING {
            return Err(
                ApplyError::InvalidArgument("activation token is not pending".into()).into(),
            );
        }
        if new_user.is_some_and(|u| u.email != token.email) {
            return Err(ApplyError::InvalidArgument(
                "the new user's e-mail does not match the activation token".into(),
            )
            .into());
        }
        let create_user = match new_user {
            Some(u) => self.index_get(Index::UserByEmail, &u.email)?.is_none(),
            None => false,
        };
        if create_user && let Some(u) = new_user {
            self.check_new(u, None)?;
        }
        token.status = TOKEN_ACTIVE;
        token.completed = Some(completed);
        self.write(&token)?;
        if create_user && let Some(u) = new_user {
            self.write(u)?;
        }
        Ok(to_json(&token))
    }

    fn pair_node(&self, node: &Node) -> Step<Json> {
        let mrealm = node.mrealm_oid.ok_or_else(|| {
            ApplyError::InvalidArgument("pairing needs a management realm".into())
        })?;
        if node.authid.is_none() {
            return Err(ApplyError::InvalidArgument("pairing needs an authid".into()).into());
        }
        self.check_parent(Kind::ManagementRealm, &mrealm.to_string())?;
        match self.lookup::<Node>(Index::NodeByPubkey, &node.pubkey)? {
            Some(existing) if existing.mrealm_oid.is_some() => Err(ApplyError::NodeAlreadyPaired {
                pubkey: node.pubkey.clone(),
            }
            .into()),
            Some(existing) => {
                let paired = Node {
                    oid: existing.oid,
                    label: node.label.clone().or(existing.label.clone()),
                    description: node.description.clone().or(existing.description.clone()),
                    tags: node.tags.clone().or(existing.tags.clone()),
                    owner_oid: node.owner_oid.or(existing.owner_oid),
                    cluster_ip: node.cluster_ip.clone().or(existing.cluster_ip.clone()),
                    ..node.clone()
                };
                self.check_new(&paired, Some(&existing))?;
                self.erase(&existing)?;
                self.write(&paired)?;
                Ok(to_json(&paired))
            }
            None => self.insert(node),
        }
    }

    fn unpair_node(&self, oid: &Oid) -> Step<Json> {
        let node = self
            .get::<Node>(&oid.to_string())?
            .ok_or_else(|| ApplyError::NoSuchObject {
                kind: Kind::Node,
                key: oid.to_string(),
            })?;
        if node.mrealm_oid.is_none() {
            return Err(ApplyError::NodeNotPaired {
                key: oid.to_string(),
            }
            .into());
        }
        self.erase_key(Kind::Presence, &oid.to_string())?;
        let unpaired = Node {
            mrealm_oid: None,
            authid: None,
            authextra: None,
            ..node.clone()
        };
        self.erase(&node)?;
        self.write(&unpaired)?;
        // The paired record: the caller needs its realm and authid to close the session.
        Ok(to_json(&node))
    }

    fn purge(&self, kind: Kind, key: &str) -> Step<Json> {
        let removed = self.txn.open_table(kind.table())?.remove(key)?.is_some();
        if !removed {
            return Err(ApplyError::NoSuchObject {
                kind,
                key: key.to_string(),
            }
            .into());
        }
        // The record cannot be trusted to name its index entries: look for them all.
        let mut entries = 0;
        for index in Index::ALL {
            let mut table = self.txn.open_table(index.table())?;
            let pointing: Vec<String> = table
                .iter()?
                .filter_map(|e| e.ok())
                .filter(|(_, v)| v.value() == key)
                .map(|(k, _)| k.value().to_owned())
                .collect();
            for k in pointing {
                table.remove(k.as_str())?;
                entries += 1;
            }
        }
        Ok(serde_json::json!({"purged": key, "kind": kind.name(), "index_entries": entries}))
    }

    fn delete(&self, kind: Kind, key: &str, cascade: bool) -> Step<Json> {
        let mut json = with_kind!(kind, R => match self.get::<R>(key)? {
            Some(r) => to_json(&r),
            None => {
                return Err(ApplyError::NoSuchObject { kind, key: key.to_string() }.into())
            }
        });
        let mut plan = Plan::default();
        self.plan_delete(kind, key, &json, cascade, &mut plan)?;
        let mut unpaired = Vec::new();
        for node_key in &plan.unpair {
            self.unpair_node(&node_key.parse().expect("node keys are oids"))?;
            unpaired.push(Json::String(node_key.clone()));
        }
        for (k, key) in plan.erase.iter().rev() {
            self.erase_key(*k, key)?;
        }
        if kind == Kind::ManagementRealm {
            json.as_object_mut()
                .expect("records are objects")
                .insert("unpaired".into(), Json::Array(unpaired));
        }
        Ok(json)
    }

    /// Collects `key` and everything deleted with it (parents before children).
    fn plan_delete(
        &self,
        kind: Kind,
        key: &str,
        json: &Json,
        cascade: bool,
        plan: &mut Plan,
    ) -> Step<()> {
        plan.erase.push((kind, key.to_string()));
        let status = json.get("status").and_then(Json::as_str);
        // Deleting is decided against the status at apply time, so a delete racing a start
        // on another replica cannot remove an object that is starting.
        let deletable_from: &[&str] = match kind {
            Kind::ApplicationRealm | Kind::RouterCluster | Kind::WebCluster => &STOPPED,
            Kind::Trace => &Trace::DELETABLE,
            _ => &[],
        };
        if !deletable_from.is_empty()
            && let Some(s) = status
            && !deletable_from.contains(&s)
        {
            return Err(ApplyError::NotStopped {
                kind,
                key: key.to_string(),
                status: s.to_string(),
            }
            .into());
        }
        let parts: Vec<&str> = key.split('/').collect();
        let field = |name: &str| {
            json.get(name)
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut owned: Vec<(Kind, String)> = Vec::new();
        let mut blocking: Vec<(Kind, String)> = Vec::new();
        let keys_of = |kind: Kind, prefix: String| -> Step<Vec<(Kind, String)>> {
            Ok(self
                .scan_json(kind, &prefix)?
                .into_iter()
                .map(|(k, _)| (kind, k))
                .collect())
        };
        let keys_where =
            |kind: Kind, prefix: String, f: &str, v: &str| -> Step<Vec<(Kind, String)>> {
                Ok(self
                    .scan_json(kind, &prefix)?
                    .into_iter()
                    .filter(|(_, j)| j.get(f).and_then(Json::as_str) == Some(v))
                    .map(|(k, _)| (kind, k))
                    .collect())
            };
        match kind {
            Kind::Organization => {
                blocking.extend(keys_of(Kind::UserOrganizationRole, format!("{key}/"))?);
            }
            Kind::User => {
                for (_, pk) in self.index_scan(Index::MrealmRoleByUser, &format!("{key}/"))? {
                    owned.push((Kind::UserMrealmRole, pk));
                }
                for (_, pk) in self.index_scan(Index::OrganizationRoleByUser, &format!("{key}/"))? {
                    owned.push((Kind::UserOrganizationRole, pk));
                }
                blocking.extend(keys_where(
                    Kind::ManagementRealm,
                    String::new(),
                    "owner",
                    key,
                )?);
            }
            Kind::ManagementRealm => {
                // Nodes are global objects: deleting their realm unpairs them (with cascade).
                let nodes = self.index_scan(Index::NodeByMrealm, &format!("{key}/"))?;
                if !nodes.is_empty() && !cascade {
                    return Err(ApplyError::DependentObjects {
                        kind,
                        key: key.to_string(),
                        dependent: Kind::Node,
                        count: nodes.len(),
                    }
                    .into());
                }
                plan.unpair.extend(nodes.into_iter().map(|(_, node)| node));
                // Everything scoped to the realm goes with it, whatever its status.
                for scoped in SCOPED {
                    owned.extend(keys_of(scoped, format!("{key}/"))?);
                }
                plan.erase.append(&mut owned);
                return Ok(());
            }
            Kind::Node => {
                owned.extend(keys_of(Kind::Presence, key.to_string())?);
                if json.get("mrealm_oid").is_some_and(|m| !m.is_null()) {
                    blocking.push((Kind::ManagementRealm, field("mrealm_oid")));
                    let prefix = format!("{}/", field("mrealm_oid"));
                    for k in [
                        Kind::RouterClusterNodeMembership,
                        Kind::WebClusterNodeMembership,
                        Kind::RouterWorkerGroupClusterPlacement,
                    ] {
                        blocking.extend(keys_where(k, prefix.clone(), "node_oid", key)?);
                    }
                }
                if !blocking.is_empty() && !cascade {
                    return Err(ApplyError::DependentObjects {
                        kind,
                        key: key.to_string(),
                        dependent: blocking[0].0,
                        count: blocking.len(),
                    }
                    .into());
                }
                // The realm itself is not deleted with the node: only the node's memberships.
                blocking.retain(|(k, _)| *k != Kind::ManagementRealm);
            }
            Kind::ApplicationRealm => {
                let prefix = format!("{}/{}/", parts[0], parts[1]);
                owned.extend(keys_of(Kind::Principal, prefix.clone())?);
                owned.extend(keys_of(Kind::ArealmRoleAssociation, prefix)?);
            }
            Kind::Role => {
                let (m, r) = (parts[0], parts[1]);
                owned.extend(keys_of(Kind::Permission, format!("{m}/{r}/"))?);
                blocking.extend(keys_where(Kind::Principal, format!("{m}/"), "role_oid", r)?);
                blocking.extend(keys_where(
                    Kind::ArealmRoleAssociation,
                    format!("{m}/"),
                    "role_oid",
                    r,
                )?);
            }
            Kind::Principal => {
                owned.extend(keys_of(
                    Kind::Credential,
                    format!("{}/{}/", parts[0], parts[2]),
                )?);
            }
            Kind::RouterCluster => {
                let prefix = format!("{}/{}/", parts[0], parts[1]);
                owned.extend(keys_of(Kind::RouterClusterNodeMembership, prefix.clone())?);
                owned.extend(keys_of(Kind::RouterWorkerGroup, prefix)?);
            }
            Kind::RouterClusterNodeMembership => {
                // Workers placed on the node keep it in the cluster until their group goes.
                let (c, n) = (field("cluster_oid"), field("node_oid"));
                blocking.extend(
                    self.scan_json(
                        Kind::RouterWorkerGroupClusterPlacement,
                        &format!("{}/", parts[0]),
                    )?
                    .into_iter()
                    .filter(|(_, j)| {
                        j.get("cluster_oid").and_then(Json::as_str) == Some(c.as_str())
                            && j.get("node_oid").and_then(Json::as_str) == Some(n.as_str())
                    })
                    .map(|(k, _)| (Kind::RouterWorkerGroupClusterPlacement, k)),
                );
            }
            Kind::RouterWorkerGroup => {
                owned.extend(keys_of(
                    Kind::RouterWorkerGroupClusterPlacement,
                    format!("{}/{}/", parts[0], parts[2]),
                )?);
            }
            Kind::WebCluster => {
                let prefix = format!("{}/{}/", parts[0], parts[1]);
                owned.extend(keys_of(Kind::WebClusterNodeMembership, prefix.clone())?);
                owned.extend(keys_of(Kind::WebService, prefix)?);
            }
            _ => {}
        }
        if !blocking.is_empty() && !cascade {
            return Err(ApplyError::DependentObjects {
                kind,
                key: key.to_string(),
                dependent: blocking[0].0,
                count: blocking.len(),
            }
            .into());
        }
        for (k, child) in owned.into_iter().chain(blocking) {
            if plan
                .erase
                .iter()
                .any(|(pk, pkey)| *pk == k && *pkey == child)
            {
                continue;
            }
            let child_json = with_kind!(k, R => match self.get::<R>(&child)? {
                Some(r) => to_json(&r),
                None => continue,
            });
            // Children go with their parent even if their own status would refuse a delete.
            self.plan_delete_child(k, &child, &child_json, plan)?;
        }
        Ok(())
    }

    fn plan_delete_child(&self, kind: Kind, key: &str, json: &Json, plan: &mut Plan) -> Step<()> {
        let mut stopped = json.clone();
        if let Some(obj) = stopped.as_object_mut() {
            obj.remove("status");
        }
        self.plan_delete(kind, key, &stopped, true, plan)
    }
}
