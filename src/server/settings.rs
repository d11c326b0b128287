//! What `fabric-master start` runs with, after flags, environment and file are merged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{FileConfig, RealmConfig};
use crate::tls::TlsFiles;
use crate::transport::TransportConfig;

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
    /// StatefulSet pod 0: form a new cluster once every one of these (the other voters' pods)
    /// answers without a cluster; join the cluster one of them holds instead.
    BootstrapUnlessFormed(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: u64,
    pub peer_listen: SocketAddr,
    pub advertise: Option<String>,
    pub formation: Formation,
    pub write_timeout: Duration,
    pub raft: crate::raft::Timing,
    /// How long a replica holding node sessions may go unheard before the leader drops
    /// their presence.
    pub presence_lease: Duration,
    /// Mutual TLS on the peer port.
    pub peer_tls: Option<TlsFiles>,
    /// Serve the peer port without TLS even where other hosts can reach it.
    pub insecure_peers: bool,
    /// Replicas that join by themselves vote while there are fewer voters than this; the
    /// others serve as learners.
    pub voters: usize,
    /// The leader removes a learner that has not answered for this long.
    pub learner_reap: Duration,
    /// Join as a learner only, never taking a voter's place (a serving pool).
    pub learner: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: 1,
            peer_listen: "127.0.0.1:9401".parse().expect("valid default"),
            advertise: None,
            formation: Formation::Single,
            write_timeout: Duration::from_secs(5),
            raft: Default::default(),
            presence_lease: Duration::from_secs(30),
            peer_tls: None,
            insecure_peers: false,
            voters: 3,
            learner_reap: Duration::from_secs(30),
            learner: false,
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
    /// What may wait for one session, and for all of them.
    pub outbound: crate::transport::Budget,
    /// What one client session may hold at once.
    pub session_limits: crate::router::SessionLimits,
    /// How many activation codes this replica issues.
    pub activation_limits: crate::auth::limits::IssueLimits,
    pub realms: Vec<RealmConfig>,
    pub smtp: Option<SmtpSettings>,
    /// Certificate and key of the WebSocket listener; plain ws:// without them.
    pub tls: Option<ListenerTlsFiles>,
    pub cluster: ClusterSettings,
    pub drain: DrainSettings,
}

/// How a replica that is told to stop lets its sessions go (`server/drain.rs`).
#[derive(Clone, Copy, Debug)]
pub struct DrainSettings {
    /// `/readyz` answers 503 this long before the first session is closed, so that load
    /// balancers stop sending new connections first.
    pub delay: Duration,
    /// Sessions are closed spread over this window, so they do not all reconnect at once.
    pub window: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        DrainSettings {
            delay: Duration::from_secs(3),
            window: Duration::from_secs(5),
        }
    }
}

/// The WebSocket listener's certificate chain and private key (PEM files).
#[derive(Clone, Debug)]
pub struct ListenerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
            activation_limits: Default::default(),
            session_limits: {
                let d = crate::router::SessionLimits::default();
                crate::router::SessionLimits {
                    pending_calls: file.max_pending_calls.unwrap_or(d.pending_calls),
                    registrations: file.max_registrations.unwrap_or(d.registrations),
                    subscriptions: file.max_subscriptions.unwrap_or(d.subscriptions),
                }
            },
            outbound: crate::transport::Budget {
                messages: file.outbox_capacity.unwrap_or(65_536),
                bytes: file.max_outbound_bytes.unwrap_or(16 << 20),
                total_bytes: file.max_outbound_bytes_total.unwrap_or(512 << 20),
                realm_bytes: file.max_outbound_bytes_realm.unwrap_or(256 << 20),
            },
            realms: file.realms,
            smtp: file.smtp_url.map(|url| SmtpSettings {
                url,
                from: file
                    .smtp_from
                    .unwrap_or_else(|| "fabric-master@localhost".into()),
            }),
            tls: match (file.tls_cert, file.tls_key) {
                (Some(cert), Some(key)) => Some(ListenerTlsFiles { cert, key }),
                _ => None,
            },
            cluster: ClusterSettings::default(),
            drain: DrainSettings::default(),
        }
    }
}
