//! `crossbarfabriccenter.mrealm.metadata.*` (spec §6.3): documentation attached to the
//! objects of a management realm, one document per object. The reference registers these
//! procedures as broken stubs; here they store and return the documents.

use std::sync::Arc;

use uuid::Uuid;

use super::args::*;
use super::errors::*;
use super::objects::*;
use super::reply::*;
use super::route;
use super::scope::Scope;
use super::to_json;
use crate::clock::now_ns;
use crate::router::internal::{CallError, Handler, Invocation};
use crate::store::model::{
    Credential, Docs, Node, Permission, Principal, RouterWorkerGroup, WebService,
};
use crate::store::{AnyRecord, Command, Kind, Reader};
use crate::wamp::Value;

const PREFIX: &str = "crossbarfabriccenter.mrealm.metadata.";

/// The object types documentation can be attached to.
const OTYPES: [&str; 11] = [
    "mrealm",
    "node",
    "arealm",
    "role",
    "permission",
    "principal",
    "credential",
    "routercluster",
    "workergroup",
    "webcluster",
    "webservice",
];

pub fn handlers(scope: &Arc<Scope>) -> Vec<(String, Handler)> {
    vec![
        route(scope, PREFIX, "get_docs", get_docs),
        route(scope, PREFIX, "add_docs", add_docs),
        route(scope, PREFIX, "delete_docs", delete_docs),
    ]
}

/// An object id argument; the reference words a malformed one this way.
fn object_oid(inv: &Invocation, i: usize) -> Result<Uuid, CallError> {
    let s = str_arg(inv, i, "oid")?;
    Uuid::parse_str(s).map_err(|e| bad_argument(format!("invalid object_id: {e}")))
}

fn otype_arg(inv: &Invocation) -> Result<String, CallError> {
    let otype = str_arg(inv, 0, "otype")?;
    if OTYPES.contains(&otype) {
        Ok(otype.to_owned())
    } else {
        Err(bad_argument(format!(
            "invalid otype {otype:?}: one of {OTYPES:?}"
        )))
    }
}

/// Whether an object of `otype` with this oid exists in the management realm.
fn exists(s: &Scope, r: &Reader, otype: &str, oid: &Uuid) -> Result<bool, CallError> {
    let p = s.key_prefix();
    let direct =
        |kind: Kind| -> Result<bool, CallError> { Ok(r.get_json(kind, &s.key(oid))?.is_some()) };
    Ok(match otype {
        "mrealm" => *oid == s.mrealm_oid,
        "node" => r
            .get::<Node>(&oid.to_string())?
            .is_some_and(|n| n.mrealm_oid == Some(s.mrealm_oid)),
        "arealm" => direct(Kind::ApplicationRealm)?,
        "role" => direct(Kind::Role)?,
        "routercluster" => direct(Kind::RouterCluster)?,
        "webcluster" => direct(Kind::WebCluster)?,
        "permission" => find::<Permission>(r, &p, oid)?.is_some(),
        "principal" => find::<Principal>(r, &p, oid)?.is_some(),
        "credential" => find::<Credential>(r, &p, oid)?.is_some(),
        "workergroup" => find::<RouterWorkerGroup>(r, &p, oid)?.is_some(),
        "webservice" => find::<WebService>(r, &p, oid)?.is_some(),
        _ => false,
    })
}

/// The documents of an object, or null when none were added.
async fn get_docs(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    let oid = object_oid(&inv, 1)?;
    let otype = otype_arg(&inv)?;
    let r = reader(&s).await?;
    if !exists(&s, &r, &otype, &oid)? {
        return Err(no_such_object(&otype, oid));
    }
    let docs: Option<Docs> = r.get(&s.key(oid))?;
    Ok(docs
        .filter(|d| d.otype == otype)
        .map(|d| super::to_value(d.docs))
        .unwrap_or(Value::Null))
}

/// Stores (replacing) the documents of an object; answers the stored record.
async fn add_docs(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let otype = otype_arg(&inv)?;
    let oid = object_oid(&inv, 1)?;
    let docs = match inv.arg(2).or_else(|| inv.kwarg("docs")) {
        None | Some(Value::Null) => return Err(bad_argument("docs are required")),
        Some(v) => to_json(v),
    };
    {
        let r = reader(&s).await?;
        if !exists(&s, &r, &otype, &oid)? {
            return Err(no_such_object(&otype, oid));
        }
    }
    let record = Docs {
        mrealm_oid: s.mrealm_oid,
        oid,
        otype,
        docs,
        modified: now_ns(),
    };
    let stored = propose(
        &s,
        Command::Upsert {
            record: AnyRecord::Docs(record),
        },
    )
    .await?;
    Ok(wire(stored))
}

/// Removes the documents of an object; answers the removed record.
async fn delete_docs(s: Arc<Scope>, inv: Invocation) -> Result<Value, CallError> {
    require_writer(&inv)?;
    let oid = object_oid(&inv, 0)?;
    let deleted = propose(
        &s,
        Command::Delete {
            kind: Kind::Docs,
            key: s.key(oid),
            cascade: false,
        },
    )
    .await?;
    Ok(wire(deleted))
}
