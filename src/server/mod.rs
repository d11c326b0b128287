//! Wires the replica, the router with its authenticator, the management API, the peer
//! service and the WebSocket transport into a running master: `run(settings, listeners,
//! shutdown)`, so tests can run a master in-process.

mod drain;
mod formation;
mod settings;
mod state_gauges;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use settings::{
    ClusterSettings, DrainSettings, Formation, ListenerTlsFiles, STATE_FILE, Settings, SmtpSettings,
};

use crate::auth::mailer::Mailer;
use crate::auth::{AnonymousRealm, StateAuthenticator, StaticAuthenticator, keyfile};
use crate::config::{RealmConfig, global_realm};
use crate::metrics::Exposition;
use crate::peer::{PeerService, RelayedEventsFn};
use crate::relay::EventRelay;
use crate::replica::Replica;
use crate::router::{Router, RouterOptions, Session};
use crate::tls::PeerTls;
use crate::transport::tls::{ChannelBinding, ListenerTls};
use crate::transport::{self, Acceptor, Inbox};
use crate::wamp::Protocol;
use state_gauges::StateGauges;

/// The transport's view of the router.
pub struct Gateway {
    router: Arc<Router>,
    replica: Arc<Replica>,
    ready: AtomicBool,
    metrics: Exposition,
}

impl Acceptor for Gateway {
    type Handler = Session;

    fn open(
        &self,
        peer: SocketAddr,
        protocol: Protocol,
        binding: ChannelBinding,
    ) -> (Session, Inbox, Arc<Notify>) {
        Session::open(self.router.clone(), peer, protocol, binding)
    }

    fn ready(&self) -> bool {
        // Not ready while shutting down, or while this replica cannot commit writes.
        self.ready.load(Ordering::Relaxed) && self.replica.has_quorum()
    }

    fn metrics(&self) -> String {
        self.metrics.render()
    }
}

/// Superuser keys: the configured files, or one generated in the data dir on first start.
fn superuser_keys(settings: &Settings) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    let mut paths = settings.superusers.clone();
    if paths.is_empty() {
        let pub_path = settings.data_dir.join("superuser.pub");
        if !pub_path.exists() {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            keyfile::write_key_pair(&settings.data_dir, "superuser", &key, "superuser")?;
            tracing::info!(
                "generated superuser key {}",
                settings.data_dir.join("superuser.priv").display()
            );
        }
        paths.push(pub_path);
    }
    paths
        .iter()
        .map(|p| {
            keyfile::read_public_key(p)
                .with_context(|| format!("loading superuser key {}", p.display()))
        })
        .collect()
}

/// The sockets a master serves on, bound before it starts (tests bind port 0).
pub struct Listeners {
    /// WebSocket clients, `/healthz`, `/readyz`, `/metrics`.
    pub ws: TcpListener,
    /// The peer gRPC service.
    pub peer: TcpListener,
}

impl Listeners {
    pub async fn bind(settings: &Settings) -> anyhow::Result<Listeners> {
        let peer = TcpListener::bind(settings.cluster.peer_listen)
            .await
            .with_context(|| format!("binding peer address {}", settings.cluster.peer_listen))?;
        let ws = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Listeners { ws, peer })
    }
}

/// Binds the configured addresses and serves until SIGTERM or SIGINT.
pub async fn start(settings: Settings) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&settings).await?;
    run(settings, listeners, async {
        match shutdown_signal().await {
            Ok(name) => tracing::info!("{name} received"),
            Err(e) => tracing::error!("cannot listen for signals: {e}"),
        }
    })
    .await
}

/// Runs a master on bound listeners until `shutdown` completes, then drains: `/readyz`
/// answers 503, and after the drain delay every session is closed with
/// `wamp.close.system_shutdown` over the drain window; a learner leaves the cluster and a
/// leader hands over before the replica stops.
///
/// Construction follows the layers: the replica, then the router with its authenticator
/// and relay, then the management API; the peer service starts once everything it answers
/// for exists, and only then does the replica enter its cluster.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let realms = configured_realms(&settings)?;
    let superusers = superuser_keys(&settings)?;
    let mailer = match &settings.smtp {
        Some(smtp) => {
            let mailer = Mailer::new(&smtp.url, &smtp.from).context("SMTP settings")?;
            tracing::info!("activation codes are mailed from {}", smtp.from);
            Some(Arc::new(mailer))
        }
        None => None,
    };
    let advertise = match &settings.cluster.advertise {
        Some(a) => a.clone(),
        None => listeners.peer.local_addr()?.to_string(),
    };
    let peer_tls = peer_tls(&settings.cluster, listeners.peer.local_addr()?, &advertise)?;
    let replica = open_replica(&settings, advertise, peer_tls.clone()).await?;
    let anonymous = realms
        .iter()
        .map(|r| AnonymousRealm {
            realm: r.name.clone(),
            role: r.anonymous_role.clone(),
        })
        .collect();
    let authenticator = Arc::new(StateAuthenticator::new(
        StaticAuthenticator::new(superusers.clone(), anonymous),
        superusers,
        replica.clone(),
        mailer,
        settings.activation_limits,
    ));
    let router = Router::new(
        authenticator,
        RouterOptions {
            node_name: settings.node_name.clone(),
            outbound: settings.outbound,
            default_call_timeout_ms: settings.call_timeout_ms,
            session_limits: settings.session_limits,
        },
        Some(EventRelay::start(replica.clone())),
    );
    for r in &realms {
        router.add_realm(r.spec());
    }
    let api = crate::api::start(&router, replica.clone())
        .await
        .context("starting the management backends")?;
    let sessions = {
        let router = Arc::downgrade(&router);
        Arc::new(move || router.upgrade().map_or(0, |r| r.session_count()))
    };
    let peer_service = PeerService::new(
        replica.clone(),
        api.node_calls(),
        deliver_relayed_events(&router),
        sessions,
    );
    let (peer_stop, peer_stopped) = tokio::sync::oneshot::channel::<()>();
    let listener_tls = match &settings.tls {
        Some(files) => Some(
            ListenerTls::load(&files.cert, &files.key)
                .context("loading the WebSocket TLS certificate")?,
        ),
        None => None,
    };
    reload_on_sighup(peer_tls.clone(), listener_tls.clone())?;
    let peer_tls = peer_tls.clone();
    let peer_server = tokio::spawn(async move {
        let stopped = async {
            let _ = peer_stopped.await;
        };
        if let Err(e) = crate::peer::serve(listeners.peer, peer_service, peer_tls, stopped).await {
            tracing::error!("peer service stopped: {e:#}");
        }
    });
    let role = if settings.cluster.learner {
        crate::replica::JoinAs::Learner
    } else {
        crate::replica::JoinAs::VoterIfRoom
    };
    formation::enter_cluster(&replica, &settings.cluster.formation, role).await?;
    crate::replica::presence_lease::spawn(replica.clone(), settings.cluster.presence_lease);
    crate::replica::learner_reaper::spawn(replica.clone(), settings.cluster.learner_reap);
    crate::replica::joint_config::spawn(replica.clone());
    crate::auth::limits::spawn_purge(replica.clone());
    api.forget_earlier_sessions().await;
    let local = listeners.ws.local_addr()?;
    let gateway = Arc::new(Gateway {
        router: router.clone(),
        replica: replica.clone(),
        ready: AtomicBool::new(true),
        metrics: Exposition::new(StateGauges {
            router: router.clone(),
            replica: replica.clone(),
            state_file: settings.data_dir.join(STATE_FILE),
        }),
    });
    tracing::info!(
        "fabric-master ready on {}://{local}/ws (realms: {}) in {} ms",
        if listener_tls.is_some() { "wss" } else { "ws" },
        realms
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_millis()
    );
    // Boxed so that dropping it closes the listening socket (no connection waits in its
    // backlog for a replica that will never accept it).
    let mut serving = Box::pin(transport::serve(
        listeners.ws,
        gateway.clone(),
        settings.transport,
        listener_tls,
    ));
    tokio::select! {
        served = &mut serving => served?,
        () = shutdown => {}
        why = replica.raft_stopped() => {
            // A replica whose Raft core stopped (its disk full, its file unwritable) serves
            // nothing right: it exits non-zero so that its supervisor restarts it (and says
            // why again, until the cause is gone), and its clients reconnect elsewhere.
            tracing::error!("the Raft core stopped: {why}; exiting");
            gateway.ready.store(false, Ordering::Relaxed);
            router.close_all(
                crate::wamp::errors::CLOSE_SYSTEM_SHUTDOWN,
                "this replica stopped; connect again",
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = peer_stop.send(());
            anyhow::bail!("the Raft core stopped: {why}");
        }
    }
    let drain = settings.drain;
    gateway.ready.store(false, Ordering::Relaxed);
    tracing::info!(
        "draining: /readyz answers 503; closing {} sessions in {} ms, over {} ms",
        router.session_count(),
        drain.delay.as_millis(),
        drain.window.as_millis()
    );
    // Still accepting meanwhile: the load balancer may send a few more until it notices.
    tokio::select! {
        _ = &mut serving => {}
        () = tokio::time::sleep(drain.delay) => {}
    }
    drop(serving);
    let closed = drain::close_sessions(&router, drain.window).await;
    tracing::info!("closed {closed} sessions");
    replica.depart().await;
    // The master's own sessions, and any client that slipped in during the drain.
    router.close_all(
        crate::wamp::errors::CLOSE_SYSTEM_SHUTDOWN,
        "the master is shutting down",
    );
    // Give the last GOODBYEs a moment to leave.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = peer_stop.send(());
    let _ = peer_server.await;
    replica.shutdown().await;
    Ok(())
}

/// The global realm and the realms of the config file.
fn configured_realms(settings: &Settings) -> anyhow::Result<Vec<RealmConfig>> {
    let mut realms = vec![global_realm()];
    for r in settings.realms.iter() {
        r.validate()?;
        if r.name == crate::auth::GLOBAL_REALM {
            anyhow::bail!("realm {} is built in and cannot be configured", r.name);
        }
    }
    realms.extend(settings.realms.iter().map(|r| RealmConfig {
        name: r.name.clone(),
        anonymous_role: r.anonymous_role.clone(),
        roles: r.roles.clone(),
        internal_roles: vec![],
    }));
    Ok(realms)
}

/// Publications relayed from the other replicas go to this router's subscribers.
fn deliver_relayed_events(router: &Arc<Router>) -> RelayedEventsFn {
    let router = Arc::downgrade(router);
    Arc::new(move |events| {
        let Some(router) = router.upgrade() else {
            return;
        };
        for event in events {
            let (realm, topic, options, details, payload) = event.into_parts();
            // A realm not (yet) created here has no subscribers to miss the event.
            if let Some(realm) = router.realm(&realm) {
                realm.publish_relayed(&topic, &options, details, payload);
            }
        }
    })
}

/// Opens the replica's state (its raft node starts, not yet serving peers).
async fn open_replica(
    settings: &Settings,
    advertise: String,
    tls: Option<Arc<PeerTls>>,
) -> anyhow::Result<Arc<Replica>> {
    let c = &settings.cluster;
    let path = settings.data_dir.join(STATE_FILE);
    let db =
        crate::raft::open_database(&path).with_context(|| format!("opening {}", path.display()))?;
    if !(1..=7).contains(&c.voters) {
        anyhow::bail!("--voters must be 1 to 7 (3 or 5 advised), not {}", c.voters);
    }
    Replica::open(
        c.node_id,
        advertise,
        db,
        c.write_timeout,
        c.raft,
        c.voters,
        tls,
    )
    .await
}

/// The peer port's TLS material; without it, a peer port other hosts can reach is refused
/// unless the operator insists (`--insecure-peers`): whoever reaches it could read every
/// credential and rewrite the state.
fn peer_tls(
    c: &ClusterSettings,
    bound: SocketAddr,
    advertise: &str,
) -> anyhow::Result<Option<Arc<PeerTls>>> {
    if let Some(files) = &c.peer_tls {
        let tls = PeerTls::load(files.clone()).context("loading the peer TLS material")?;
        tracing::info!("peer port {bound} requires certificates of the cluster CA");
        return Ok(Some(tls));
    }
    let advertised_host = advertise
        .rsplit_once(':')
        .map_or(advertise, |(host, _)| host)
        .trim_matches(['[', ']']);
    let advertised_loopback = advertised_host == "localhost"
        || advertised_host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if bound.ip().is_loopback() && advertised_loopback {
        return Ok(None);
    }
    if c.insecure_peers {
        tracing::warn!(
            "peer port {bound} (advertised as {advertise}) has no TLS: anyone who reaches it \
             can read and change the whole state"
        );
        return Ok(None);
    }
    anyhow::bail!(
        "the peer port {bound} (advertised as {advertise}) is reachable from other hosts and \
         has no TLS: give --peer-tls-ca, --peer-tls-cert and --peer-tls-key (make them with \
         `fabric-master certs`), or --insecure-peers on a network you trust"
    )
}

/// SIGHUP reloads the peer certificates and CA from their files (rotation without
/// downtime); a reload that fails keeps the current material.
fn reload_on_sighup(
    peer: Option<Arc<PeerTls>>,
    listener: Option<Arc<ListenerTls>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    if peer.is_none() && listener.is_none() {
        return Ok(());
    }
    let mut hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Some(tls) = &peer {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the peer TLS material"),
                    Err(e) => tracing::error!("SIGHUP: peer TLS material not reloaded: {e}"),
                }
            }
            if let Some(tls) = &listener {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the WebSocket TLS certificate"),
                    Err(e) => {
                        tracing::error!("SIGHUP: WebSocket TLS certificate not reloaded: {e}")
                    }
                }
            }
        }
    });
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
