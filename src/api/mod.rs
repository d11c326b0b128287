//! Management backends, registered as internal callees on the router: the domain, user and
//! management-realm procedures of the global realm (spec §6.1).

/// `(URI, handler)` pairs of `async fn(ctx, publisher, invocation)` backends, each registered
/// under `prefix` + its own name.
macro_rules! backends {
    ($ctx:expr, $publisher:expr, $prefix:literal; $($name:ident),* $(,)?) => {
        vec![$((concat!($prefix, stringify!($name)), $crate::api::backend($ctx, $publisher, $name))),*]
    };
}

mod arealm;
mod args;
mod backend;
mod catalogue;
mod clusters;
mod controller;
mod domain;
pub mod errors;
mod metadata;
mod mrealm;
mod objects;
mod orchestrate;
pub mod realms;
mod remote;
mod reply;
mod routercluster;
pub mod scope;
mod tracing;
mod user;
mod webcluster;

use std::sync::Arc;
use std::time::Instant;

use crate::replica::Replica;
use crate::router::Router;
use crate::router::internal::{CallError, Handler, InternalSession, Invocation};
use crate::wamp::{Payload, Value};

/// What every backend needs.
pub struct Ctx {
    pub replica: Arc<Replica>,
    pub mrealms: catalogue::Catalogue,
    pub realms: Arc<realms::RealmSync>,
    pub started: Instant,
    pub started_iso: String,
}

impl Ctx {
    /// The router realm serving a management realm on this replica.
    pub fn realms_router_realm(&self, name: &str) -> Option<Arc<crate::router::realm::Realm>> {
        self.realms.router_realm(name)
    }
}

/// The management API of this replica, once its backends are registered.
pub struct Api {
    realms: Arc<realms::RealmSync>,
    replica: Arc<Replica>,
}

/// Joins the global realm and registers the backends. Needs no quorum: the peer service
/// starts after this, with [`Api::node_calls`] to answer the calls routed here.
pub async fn start(router: &Arc<Router>, replica: Arc<Replica>) -> anyhow::Result<Api> {
    let realm = router
        .realm(crate::auth::GLOBAL_REALM)
        .ok_or_else(|| anyhow::anyhow!("the global realm is missing"))?;
    let ctx = Arc::new_cyclic(|ctx| Ctx {
        replica: replica.clone(),
        mrealms: Default::default(),
        realms: realms::RealmSync::new(router.clone(), replica.clone(), ctx.clone()),
        started: Instant::now(),
        started_iso: crate::clock::now_iso(),
    });
    ctx.realms.spawn();
    let mut session = InternalSession::join_with_permissions_of(
        realm.clone(),
        "fabric-master",
        "user-backend",
        crate::authz::MASTER_ROLE,
    );
    let publisher = Publisher { realm };
    for (uri, handler) in domain::handlers(&ctx)
        .into_iter()
        .chain(mrealm::handlers(&ctx, &publisher))
        .chain(user::handlers(&ctx, &publisher))
    {
        session
            .register(uri, false, handler)
            .await
            .map_err(|e| anyhow::anyhow!("registering {uri}: {} {}", e.uri, e.message))?;
    }
    tokio::spawn(session.serve());
    Ok(Api {
        realms: ctx.realms.clone(),
        replica,
    })
}

impl Api {
    /// Answers node calls that other replicas route here (the node's session is on this one).
    pub fn node_calls(&self) -> crate::peer::NodeCallFn {
        let realms = self.realms.clone();
        Arc::new(move |realm, procedure, payload, timeout| {
            let backend = realms.backend(&realm);
            Box::pin(async move {
                let Some(b) = backend else {
                    return Err(CallError::new(
                        crate::wamp::errors::NO_SUCH_PROCEDURE,
                        format!("management realm {realm} is not served here"),
                    ));
                };
                b.controller
                    .caller()
                    .call(&procedure, payload, timeout)
                    .await
            })
        })
    }

    /// Drops the presence of node sessions this replica held before it restarted; call once
    /// the replica is in its cluster, before sessions are accepted.
    pub async fn forget_earlier_sessions(&self) {
        forget_earlier_sessions(&self.replica).await
    }
}

/// Node sessions this replica held before it restarted are gone: their presence records
/// are dropped before this replica accepts sessions (later if there is no quorum yet).
async fn forget_earlier_sessions(replica: &Arc<Replica>) {
    let drop = crate::store::Command::PresenceDropStale {
        replica_id: replica.id,
        joined_before: crate::clock::now_ns(),
        current_run: Some(replica.run_id),
    };
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        replica.propose(drop.clone()),
    )
    .await;
    if matches!(first, Ok(Ok(_))) {
        return;
    }
    let replica = replica.clone();
    tokio::spawn(async move {
        for attempt in 0u32.. {
            tokio::time::sleep(std::time::Duration::from_secs(1 << attempt.min(5))).await;
            match replica.propose(drop.clone()).await {
                Ok(_) => return,
                Err(e) => ::tracing::warn!("stale node presence not dropped yet: {e}"),
            }
        }
    });
}

/// Publishes management events on a realm. Events that happen once in the cluster (an
/// object changed by a call this replica served) reach every replica's subscribers; events
/// every replica derives for itself (presence changes, republished node events, ticks) stay
/// local, or subscribers would get them once per replica.
#[derive(Clone)]
pub struct Publisher {
    realm: Arc<crate::router::realm::Realm>,
}

fn args_payload(args: Vec<Value>, kwargs: Option<crate::wamp::Dict>) -> Payload {
    Payload {
        args: Some(Value::List(args)),
        kwargs,
    }
}

impl Publisher {
    pub fn new(realm: Arc<crate::router::realm::Realm>) -> Publisher {
        Publisher { realm }
    }

    pub fn realm(&self) -> &Arc<crate::router::realm::Realm> {
        &self.realm
    }

    /// To every replica's subscribers.
    pub fn publish(&self, topic: &str, args: Vec<Value>) {
        self.publish_to(topic, args, &crate::wamp::Dict::new());
    }

    /// To every replica's subscribers that `options` admit (`eligible_authrole`, …).
    pub fn publish_to(&self, topic: &str, args: Vec<Value>, options: &crate::wamp::Dict) {
        self.realm
            .publish_cluster(topic, args_payload(args, None), options);
    }

    /// To this replica's subscribers.
    pub fn publish_local(&self, topic: &str, args: Vec<Value>) {
        self.realm.publish_internal(topic, args);
    }

    /// To this replica's subscribers that `options` admit.
    pub fn publish_local_to(&self, topic: &str, args: Vec<Value>, options: &crate::wamp::Dict) {
        self.realm
            .publish_internal_with(topic, args_payload(args, None), options);
    }

    /// To this replica's subscribers, with keyword arguments.
    pub fn publish_local_with(
        &self,
        topic: &str,
        args: Vec<Value>,
        kwargs: Option<crate::wamp::Dict>,
    ) {
        self.realm
            .publish_internal_payload(topic, args_payload(args, kwargs));
    }
}

/// Every procedure the backend of one management realm registers on it (spec §6.2–§6.6),
/// as (URI, handler) pairs.
pub fn mrealm_handlers(scope: &Arc<scope::Scope>) -> Vec<(String, Handler)> {
    let mut handlers: Vec<(String, Handler)> = Vec::new();
    // Each group of the management realm's API adds its handlers here.
    handlers.extend(metadata::handlers(scope));
    handlers.extend(arealm::handlers(scope));
    handlers.extend(routercluster::handlers(scope));
    handlers.extend(webcluster::handlers(scope));
    handlers
}

/// A handler from an `async fn(ctx, publisher, invocation)`.
pub fn backend<F, Fut>(ctx: &Arc<Ctx>, publisher: &Publisher, f: F) -> Handler
where
    F: Fn(Arc<Ctx>, Publisher, Invocation) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, CallError>> + Send + 'static,
{
    let (ctx, publisher) = (ctx.clone(), publisher.clone());
    handler(move |inv| f(ctx.clone(), publisher.clone(), inv))
}

/// One procedure `prefix + name`, called with the scope it serves.
pub fn route<F, Fut>(scope: &Arc<scope::Scope>, prefix: &str, name: &str, f: F) -> (String, Handler)
where
    F: Fn(Arc<scope::Scope>, Invocation) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, CallError>> + Send + 'static,
{
    let scope = scope.clone();
    (
        format!("{prefix}{name}"),
        handler(move |inv| f(scope.clone(), inv)),
    )
}

/// Wraps an async handler.
fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Invocation) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, CallError>> + Send + 'static,
{
    Arc::new(move |inv| {
        let fut = f(inv);
        Box::pin(async move {
            fut.await.map(|v| Payload {
                args: Some(Value::List(vec![v])),
                kwargs: None,
            })
        })
    })
}

pub fn to_value(json: serde_json::Value) -> Value {
    serde_json::from_value(json).unwrap_or(Value::Null)
}

pub fn to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
