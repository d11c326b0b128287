//! Wires a router, its authenticator and the WebSocket transport into a running master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use crate::auth::mailer::Mailer;
use crate::auth::{AnonymousRealm, StateAuthenticator, StaticAuthenticator, keyfile};
use crate::config::{FileConfig, RealmConfig, global_realm};
use crate::replica::Replica;
use crate::router::{Router, RouterOptions, Session};
use crate::transport::{self, Acceptor, Outgoing, TransportConfig};
use crate::wamp::Protocol;

/// The replica's redb file inside the data dir.
pub const STATE_FILE: &str = "state.redb";

/// How a replica enters its cluster on first start.
#[derive(Debug, Clone)]
pub enum Formation {
    /// No cluster flags: a one-voter cluster of its own.
    Single,
    /// Form a new cluster (explicit `--bootstrap`, or StatefulSet ordinal 0).
    Bootstrap,
    /// Ask one of these replicas to take it in.
    Join(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: u64,
    pub peer_listen: SocketAddr,
    pub advertise: Option<String>,
    pub formation: Formation,
    pub write_timeout: Duration,
    /// How long a replica holding node sessions may go unheard before the leader drops
    /// their presence.
    pub presence_lease: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: 1,
            peer_listen: "127.0.0.1:9401".parse().expect("valid default"),
            advertise: None,
            formation: Formation::Single,
            write_timeout: Duration::from_secs(5),
            presence_lease: Duration::from_secs(30),
        }
    }
}

/// Everything `fabric-master start` needs, after flags, environment and file are merged.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub superusers: Vec<PathBuf>,
    pub node_name: String,
    pub transport: TransportConfig,
    pub call_timeout_ms: Option<u64>,
    pub outbox_capacity: usize,
    pub realms: Vec<RealmConfig>,
    pub smtp: Option<SmtpSettings>,
    pub cluster: ClusterSettings,
}

/// Where activation codes are mailed from.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub url: String,
    pub from: String,
}

impl Settings {
    pub fn from_file(file: FileConfig) -> Settings {
        let defaults = TransportConfig::default();
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        Settings {
            listen: file
                .listen
                .unwrap_or_else(|| "127.0.0.1:9000".parse().expect("valid default")),
            data_dir: file
                .data_dir
                .unwrap_or_else(|| PathBuf::from(".fabric-master")),
            superusers: file.superuser,
            node_name: file.node_name.unwrap_or_else(|| "fabric-master".into()),
            transport: TransportConfig {
                max_message_size: file.max_message_size.unwrap_or(defaults.max_message_size),
                ping_interval: ms(file.ping_interval_ms, defaults.ping_interval),
                ping_timeout: ms(file.ping_timeout_ms, defaults.ping_timeout),
                hello_timeout: ms(file.hello_timeout_ms, defaults.hello_timeout),
                handshake_timeout: defaults.handshake_timeout,
            },
            call_timeout_ms: file.call_timeout_ms.filter(|t| *t > 0),
            outbox_capacity: file.outbox_capacity.unwrap_or(65_536),
            realms: file.realms,
            smtp: file.smtp_url.map(|url| SmtpSettings {
                url,
                from: file
                    .smtp_from
                    .unwrap_or_else(|| "fabric-master@localhost".into()),
            }),
            cluster: ClusterSettings::default(),
        }
    }
}

/// The transport's view of the router.
pub struct Gateway {
    router: Arc<Router>,
    replica: Arc<Replica>,
    ready: AtomicBool,
}

impl Acceptor for Gateway {
    type Handler = Session;

    fn open(
        &self,
        peer: SocketAddr,
        protocol: Protocol,
    ) -> (Session, mpsc::Receiver<Outgoing>, Arc<Notify>) {
        Session::open(self.router.clone(), peer, protocol)
    }

    fn ready(&self) -> bool {
        // Not ready while shutting down, or while this replica cannot commit writes.
        self.ready.load(Ordering::Relaxed) && self.replica.has_quorum()
    }

    fn metrics(&self) -> String {
        let s = self.replica.status();
        format!(
            "# TYPE fabric_sessions gauge\nfabric_sessions {}\n# TYPE fabric_realms gauge\nfabric_realms {}\n\
             # TYPE fabric_raft_is_leader gauge\nfabric_raft_is_leader {}\n\
             # TYPE fabric_raft_has_quorum gauge\nfabric_raft_has_quorum {}\n\
             # TYPE fabric_raft_term gauge\nfabric_raft_term {}\n\
             # TYPE fabric_raft_last_applied gauge\nfabric_raft_last_applied {}\n\
             # TYPE fabric_raft_voters gauge\nfabric_raft_voters {}\n",
            self.router.session_count(),
            self.router.realm_names().len(),
            u8::from(s.leader == Some(s.id)),
            u8::from(s.has_quorum),
            s.term,
            s.last_applied.unwrap_or(0),
            s.voters.len(),
        )
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

/// Starts the master and serves until the process ends.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
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
    }));
    let anonymous = realms
        .iter()
        .map(|r| AnonymousRealm {
            realm: r.name.clone(),
            role: r.anonymous_role.clone(),
        })
        .collect();
    let superusers = superuser_keys(&settings)?;
    let mailer = match &settings.smtp {
        Some(smtp) => {
            let mailer = Mailer::new(&smtp.url, &smtp.from).context("SMTP settings")?;
            tracing::info!("activation codes are mailed from {}", smtp.from);
            Some(Arc::new(mailer))
        }
        None => None,
    };
    let replica = start_replica(&settings).await?;
    let authenticator = Arc::new(StateAuthenticator::new(
        StaticAuthenticator::new(superusers.clone(), anonymous),
        superusers,
        replica.clone(),
        mailer,
    ));
    let router = Router::new(
        authenticator,
        RouterOptions {
            node_name: settings.node_name.clone(),
            outbox_capacity: settings.outbox_capacity,
            default_call_timeout_ms: settings.call_timeout_ms,
        },
    );
    for r in &realms {
        router.add_realm(r.spec());
    }
    relay_publications(&router, &replica);
    crate::replica::presence_lease::spawn(replica.clone(), settings.cluster.presence_lease);
    crate::api::start(&router, replica.clone())
        .await
        .context("starting the management backends")?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let local = listener.local_addr()?;
    let gateway = Arc::new(Gateway {
        router: router.clone(),
        replica: replica.clone(),
        ready: AtomicBool::new(true),
    });
    tracing::info!(
        "fabric-master ready on ws://{local}/ws (realms: {}) in {} ms",
        realms
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_millis()
    );
    tokio::select! {
        served = transport::serve(listener, gateway.clone(), settings.transport) => served?,
        signal = shutdown_signal() => {
            let name = signal?;
            // Stop taking connections, tell every session, give the GOODBYEs a moment to leave.
            gateway.ready.store(false, Ordering::Relaxed);
            let closed = router.close_all(crate::wamp::errors::CLOSE_SYSTEM_SHUTDOWN, "the master is shutting down");
            tracing::info!("{name}: closed {closed} sessions, shutting down");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Publications go to the other replicas' subscribers, and theirs come here.
fn relay_publications(router: &Arc<Router>, replica: &Arc<Replica>) {
    router.set_relay(crate::peer::relay::EventRelay::start(replica.clone()));
    let router = Arc::downgrade(router);
    let _ = replica.relayed_events.set(Arc::new(move |events| {
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
    }));
}

/// Opens the replica's state, serves the peer service and enters the cluster.
async fn start_replica(settings: &Settings) -> anyhow::Result<Arc<Replica>> {
    let c = &settings.cluster;
    let peer_listener = TcpListener::bind(c.peer_listen)
        .await
        .with_context(|| format!("binding peer address {}", c.peer_listen))?;
    let advertise = match &c.advertise {
        Some(a) => a.clone(),
        None => peer_listener.local_addr()?.to_string(),
    };
    let path = settings.data_dir.join(STATE_FILE);
    let db =
        crate::raft::open_database(&path).with_context(|| format!("opening {}", path.display()))?;
    let replica = Replica::open(c.node_id, advertise.clone(), db, c.write_timeout).await?;
    tokio::spawn({
        let replica = replica.clone();
        async move {
            if let Err(e) = crate::peer::serve(peer_listener, replica).await {
                tracing::error!("peer service stopped: {e:#}");
            }
        }
    });
    let initialized = replica.raft.is_initialized().await?;
    match (&c.formation, initialized) {
        (_, true) => tracing::info!("replica {} resumes with its data ({advertise})", c.node_id),
        (Formation::Single | Formation::Bootstrap, false) => {
            replica.bootstrap().await?;
            tracing::info!("replica {} formed a new cluster ({advertise})", c.node_id);
        }
        (Formation::Join(seeds), false) => {
            let seeds = seeds.clone();
            let replica = replica.clone();
            // Joining waits for a seed; meanwhile the replica serves and says "not ready".
            tokio::spawn(async move {
                for attempt in 0u64.. {
                    let seed = &seeds[(attempt as usize) % seeds.len()];
                    match replica.join_via(seed).await {
                        Ok(()) => {
                            tracing::info!("replica {} joined through {seed}", replica.id);
                            return;
                        }
                        Err(e) => tracing::warn!("joining through {seed}: {e:#}"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
    }
    Ok(replica)
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
