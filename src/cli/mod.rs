//! Command line: `fabric-master start | keygen | version | bench | cluster | backup | restore | state`.

pub mod certs;
pub mod cluster;
pub mod probe;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::FileConfig;
use crate::server::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "fabric-master",
    version,
    about = "A Crossbar.io-compatible WAMP master node"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "FABRIC_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the master.
    Start(StartArgs),
    /// Write a Crossbar.io key pair (`NAME.priv`, `NAME.pub`).
    Keygen(KeygenArgs),
    /// Print the version.
    Version,
    /// Load generator: measure a WAMP router (ours or the reference master).
    Bench(crate::bench::BenchArgs),
    /// Inspect and change the replica membership of a running cluster.
    Cluster(cluster::ClusterArgs),
    /// Write a consistent snapshot of the state of a running cluster to a file.
    Backup(cluster::BackupArgs),
    /// Turn a backup into a fresh data dir for the first replica of a new cluster.
    Restore(cluster::RestoreArgs),
    /// Read objects from the replicated state (linearizable).
    State(cluster::StateArgs),
    /// Make the peer port's mutual-TLS material: a cluster CA, and certificates for
    /// replicas and operators.
    Certs(certs::CertsArgs),
    /// Print the authorization table of the master's realms (role × URI family) as JSON.
    AuthzTable,
    /// Health check for containers: GET /healthz (or --path) of the local listener; exit
    /// status 0 on 200.
    Probe(probe::ProbeArgs),
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// TOML config file; flags and environment override it.
    #[arg(long, env = "FABRIC_CONFIG")]
    pub config: Option<PathBuf>,
    /// WebSocket listen address (path /ws).
    #[arg(long, env = "FABRIC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "FABRIC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Superuser public key file (Crossbar.io format). Default: DATA_DIR/superuser.pub, created if missing.
    #[arg(long, env = "CROSSBAR_FABRIC_SUPERUSER")]
    pub superuser: Option<PathBuf>,
    /// Name shown to clients as `x_cb_node`.
    #[arg(long, env = "FABRIC_NODE_NAME")]
    pub node_name: Option<String>,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "FABRIC_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Time allowed from the WebSocket upgrade to an established session.
    #[arg(long, env = "FABRIC_HELLO_TIMEOUT_MS")]
    pub hello_timeout_ms: Option<u64>,
    #[arg(long, env = "FABRIC_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    #[arg(long, env = "FABRIC_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,
    /// Timeout for calls that set none of their own (0 = none).
    #[arg(long, env = "FABRIC_CALL_TIMEOUT_MS")]
    pub call_timeout_ms: Option<u64>,
    /// Activation codes this replica issues per e-mail within 15 minutes (then
    /// `fabric.auth-failed.rate-limited`).
    #[arg(long, env = "FABRIC_ACTIVATION_CODES_PER_EMAIL", default_value_t = 5)]
    pub activation_codes_per_email: usize,
    /// ... per source address within 15 minutes.
    #[arg(long, env = "FABRIC_ACTIVATION_CODES_PER_SOURCE", default_value_t = 30)]
    pub activation_codes_per_source: usize,
    /// ... in all within 15 minutes.
    #[arg(long, env = "FABRIC_ACTIVATION_CODES_TOTAL", default_value_t = 300)]
    pub activation_codes_total: usize,
    /// Activation codes pending in the whole cluster at once (counted in the replicated
    /// state; at most --activation-codes-per-email of them for one e-mail).
    #[arg(long, env = "FABRIC_PENDING_ACTIVATIONS_TOTAL", default_value_t = 3000)]
    pub pending_activations_total: usize,
    /// Bytes that may wait for one session that reads too slowly before it is dropped
    /// (default 16 MiB).
    #[arg(long, env = "FABRIC_MAX_OUTBOUND_BYTES")]
    pub max_outbound_bytes: Option<usize>,
    /// Bytes that may wait for all sessions of this replica together (default 512 MiB);
    /// beyond it the largest queues are dropped first.
    #[arg(long, env = "FABRIC_MAX_OUTBOUND_BYTES_TOTAL")]
    pub max_outbound_bytes_total: Option<usize>,
    /// Bytes that may wait for all sessions of one realm together (default 256 MiB); beyond
    /// it the realm's largest queues are dropped first, so one realm cannot take the
    /// replica's whole budget.
    #[arg(long, env = "FABRIC_MAX_OUTBOUND_BYTES_REALM")]
    pub max_outbound_bytes_realm: Option<usize>,
    /// Calls one client session may have waiting for their results (default 10000); more
    /// are refused with `fabric.error.limit-exceeded`.
    #[arg(long, env = "FABRIC_MAX_PENDING_CALLS")]
    pub max_pending_calls: Option<usize>,
    /// Registrations one client session may hold (default 10000).
    #[arg(long, env = "FABRIC_MAX_REGISTRATIONS")]
    pub max_registrations: Option<usize>,
    /// Subscriptions one client session may hold (default 10000).
    #[arg(long, env = "FABRIC_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<usize>,
    /// SMTP server for mailing activation codes: `smtp://host:25`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host:465`.
    /// Codes are always logged too.
    #[arg(long, env = "FABRIC_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender address of activation mails.
    #[arg(long, env = "FABRIC_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Serve WebSocket over TLS (wss://) with this certificate chain (PEM); SIGHUP reloads it.
    #[arg(long, env = "FABRIC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "FABRIC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// On SIGTERM, `/readyz` answers 503 this long before sessions are closed (long enough
    /// for the load balancer's health check to notice).
    #[arg(long, env = "FABRIC_DRAIN_DELAY_MS", default_value_t = 3000)]
    pub drain_delay_ms: u64,
    /// On SIGTERM, sessions are closed (GOODBYE `wamp.close.system_shutdown`) spread over
    /// this window: clients first, edge nodes last.
    #[arg(long, env = "FABRIC_DRAIN_WINDOW_MS", default_value_t = 5000)]
    pub drain_window_ms: u64,
    #[command(flatten)]
    pub cluster: ClusterFlags,
}

/// How this replica finds its cluster.
#[derive(Args, Debug, Clone)]
pub struct ClusterFlags {
    /// Raft id of this replica (default 1, or the StatefulSet ordinal + 1 with --peers-template).
    #[arg(long, env = "FABRIC_NODE_ID")]
    pub node_id: Option<u64>,
    /// gRPC listen address for the other replicas and the `cluster`/`backup` commands.
    #[arg(long, env = "FABRIC_PEER_LISTEN", default_value = "127.0.0.1:9401")]
    pub peer_listen: SocketAddr,
    /// Peer address the other replicas use to reach this one (default: the bound peer address).
    #[arg(long, env = "FABRIC_ADVERTISE")]
    pub advertise: Option<String>,
    /// Form a new cluster with this replica as its only voter (ignored once initialized).
    #[arg(long, env = "FABRIC_BOOTSTRAP", conflicts_with = "join")]
    pub bootstrap: bool,
    /// Join the cluster of the replica at this peer address (ignored once a member).
    #[arg(long, env = "FABRIC_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// StatefulSet mode: peer address of replica `{}` (e.g. `fm-{}.fm-peers:9401`). The
    /// ordinal comes from the host name; ordinal 0 bootstraps, the others join a lower one.
    #[arg(long, env = "FABRIC_PEERS_TEMPLATE", conflicts_with_all = ["join", "bootstrap"])]
    pub peers_template: Option<String>,
    /// Raft id = this + the host name's StatefulSet ordinal + 1, when --node-id is not given
    /// (a serving pool's StatefulSet beside the voters', e.g. 1000).
    #[arg(long, env = "FABRIC_NODE_ID_BASE", conflicts_with = "node_id")]
    pub node_id_base: Option<u64>,
    /// How long a write may wait for a leader and a quorum before it fails.
    #[arg(long, env = "FABRIC_WRITE_TIMEOUT_MS", default_value_t = 5000)]
    pub write_timeout_ms: u64,
    /// Raft heartbeat interval (at most a third of the election timeout).
    #[arg(long, env = "FABRIC_RAFT_HEARTBEAT_MS", default_value_t = 100)]
    pub raft_heartbeat_ms: u64,
    /// Minimum Raft election timeout (the maximum is twice it); a leader serves reads from
    /// its own state for half of it after a quorum confirmed it. Equal on every replica.
    #[arg(long, env = "FABRIC_RAFT_ELECTION_TIMEOUT_MS", default_value_t = 400)]
    pub raft_election_timeout_ms: u64,
    /// Applied entries since the last snapshot that trigger a new snapshot.
    #[arg(long, env = "FABRIC_RAFT_SNAPSHOT_LOGS", default_value_t = 500)]
    pub raft_snapshot_logs: u64,
    /// The leader drops the node presence of a replica that has not answered for this long
    /// (its nodes count as offline until they reconnect somewhere).
    #[arg(long, env = "FABRIC_PRESENCE_LEASE_MS", default_value_t = 30_000)]
    pub presence_lease_ms: u64,
    /// Replicas that join by themselves vote while the cluster has fewer voters than this
    /// (1 to 7; 3 or 5 advised); every further replica serves as a non-voting learner.
    #[arg(long, env = "FABRIC_VOTERS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub voters: u64,
    /// The leader removes a learner that has not answered for this long (probed every
    /// second). Voters are only removed by `cluster remove`.
    #[arg(long, env = "FABRIC_LEARNER_REAP_MS", default_value_t = 30_000)]
    pub learner_reap_ms: u64,
    /// Join as a non-voting learner even while the cluster has room for voters (a serving
    /// pool beside a set of voters).
    #[arg(long, env = "FABRIC_LEARNER")]
    pub learner: bool,
    #[command(flatten)]
    pub tls: PeerTlsArgs,
    /// Serve the peer port without TLS although other hosts can reach it (anyone who
    /// reaches it can then read and change the whole state). Only for trusted networks.
    #[arg(long, env = "FABRIC_INSECURE_PEERS")]
    pub insecure_peers: bool,
}

/// Mutual TLS on the peer port (see `fabric-master certs`): all three, or none.
#[derive(Args, Debug, Clone, Default)]
pub struct PeerTlsArgs {
    /// CA certificate(s) the cluster trusts (PEM; several while a CA is rolled).
    #[arg(long, env = "FABRIC_PEER_TLS_CA", requires_all = ["peer_tls_cert", "peer_tls_key"])]
    pub peer_tls_ca: Option<PathBuf>,
    /// This replica's (or operator's) certificate, signed by the cluster CA.
    #[arg(long, env = "FABRIC_PEER_TLS_CERT", requires_all = ["peer_tls_ca", "peer_tls_key"])]
    pub peer_tls_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "FABRIC_PEER_TLS_KEY", requires_all = ["peer_tls_ca", "peer_tls_cert"])]
    pub peer_tls_key: Option<PathBuf>,
}

impl PeerTlsArgs {
    pub fn files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            ca: self.peer_tls_ca.clone()?,
            cert: self.peer_tls_cert.clone()?,
            key: self.peer_tls_key.clone()?,
        })
    }

    /// The loaded material, or `None` without TLS flags.
    pub fn load(&self) -> anyhow::Result<Option<std::sync::Arc<crate::tls::PeerTls>>> {
        self.files()
            .map(|f| crate::tls::PeerTls::load(f).context("loading the peer TLS material"))
            .transpose()
    }
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Directory to write the key files into.
    #[arg(long)]
    pub out: PathBuf,
    /// File name stem.
    #[arg(long, default_value = "key")]
    pub name: String,
    /// The `user-id` tag (an e-mail for users).
    #[arg(long, default_value = "unknown")]
    pub user_id: String,
}

impl StartArgs {
    pub fn settings(self) -> anyhow::Result<Settings> {
        let mut file = match &self.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        file.listen = self.listen.or(file.listen);
        file.data_dir = self.data_dir.or(file.data_dir);
        if let Some(su) = self.superuser {
            file.superuser = vec![su];
        }
        file.node_name = self.node_name.or(file.node_name);
        file.max_message_size = self.max_message_size.or(file.max_message_size);
        file.hello_timeout_ms = self.hello_timeout_ms.or(file.hello_timeout_ms);
        file.ping_interval_ms = self.ping_interval_ms.or(file.ping_interval_ms);
        file.ping_timeout_ms = self.ping_timeout_ms.or(file.ping_timeout_ms);
        file.call_timeout_ms = self.call_timeout_ms.or(file.call_timeout_ms);
        file.max_outbound_bytes = self.max_outbound_bytes.or(file.max_outbound_bytes);
        file.max_outbound_bytes_total = self
            .max_outbound_bytes_total
            .or(file.max_outbound_bytes_total);
        file.max_outbound_bytes_realm = self
            .max_outbound_bytes_realm
            .or(file.max_outbound_bytes_realm);
        file.max_pending_calls = self.max_pending_calls.or(file.max_pending_calls);
        file.max_registrations = self.max_registrations.or(file.max_registrations);
        file.max_subscriptions = self.max_subscriptions.or(file.max_subscriptions);
        file.smtp_url = self.smtp_url.or(file.smtp_url);
        file.smtp_from = self.smtp_from.or(file.smtp_from);
        file.tls_cert = self.tls_cert.or(file.tls_cert);
        file.tls_key = self.tls_key.or(file.tls_key);
        if file.tls_cert.is_some() != file.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together: give both, or neither for ws://");
        }
        let mut settings = Settings::from_file(file);
        settings.activation_limits = crate::auth::limits::IssueLimits {
            per_email: self.activation_codes_per_email,
            per_source: self.activation_codes_per_source,
            total: self.activation_codes_total,
            pending_total: self.pending_activations_total,
            ..Default::default()
        };
        settings.drain = crate::server::DrainSettings {
            delay: std::time::Duration::from_millis(self.drain_delay_ms),
            window: std::time::Duration::from_millis(self.drain_window_ms),
        };
        settings.cluster = self.cluster.resolve()?;
        Ok(settings)
    }
}

impl ClusterFlags {
    fn resolve(self) -> anyhow::Result<crate::server::ClusterSettings> {
        use crate::server::{ClusterSettings, Formation};
        let mut settings = ClusterSettings {
            node_id: self.node_id.unwrap_or(1),
            peer_listen: self.peer_listen,
            advertise: self.advertise,
            formation: if self.bootstrap {
                Formation::Bootstrap
            } else if !self.join.is_empty() {
                Formation::Join(self.join)
            } else {
                Formation::Single
            },
            write_timeout: std::time::Duration::from_millis(self.write_timeout_ms),
            raft: crate::raft::Timing {
                heartbeat_ms: self.raft_heartbeat_ms,
                election_timeout_min_ms: self.raft_election_timeout_ms,
                snapshot_logs: self.raft_snapshot_logs,
            },
            presence_lease: std::time::Duration::from_millis(self.presence_lease_ms.max(1)),
            peer_tls: self.tls.files(),
            insecure_peers: self.insecure_peers,
            voters: self.voters as usize,
            learner_reap: std::time::Duration::from_millis(self.learner_reap_ms.max(1)),
            learner: self.learner,
        };
        if let Some(base) = self.node_id_base {
            settings.node_id = base + host_ordinal()? + 1;
        }
        if let Some(template) = self.peers_template {
            let ordinal = host_ordinal()?;
            let peer = |i: u64| template.replace("{}", &i.to_string());
            settings.node_id = self.node_id.unwrap_or(ordinal + 1);
            settings.advertise = Some(settings.advertise.unwrap_or_else(|| peer(ordinal)));
            settings.formation = if ordinal == 0 {
                // The other voters' pods: pod 0 forms the cluster only if none of them holds
                // one (a pod 0 whose volume was lost joins the cluster instead).
                let voters = self.voters.max(1);
                Formation::BootstrapUnlessFormed((1..voters).map(peer).collect())
            } else {
                Formation::Join((0..ordinal).map(peer).collect())
            };
        }
        Ok(settings)
    }
}

/// The trailing `-N` of the host name, as Kubernetes gives StatefulSet pods.
fn host_ordinal() -> anyhow::Result<u64> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let host = host.trim();
    host.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .with_context(|| format!("host name {host:?} has no StatefulSet ordinal (NAME-N)"))
}

/// The authorization table the router enforces, as JSON on stdout (the test suite reads it).
pub fn authz_table() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&crate::authz::tables())?);
    Ok(())
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let (priv_path, pub_path) =
        crate::auth::keyfile::write_key_pair(&args.out, &args.name, &key, &args.user_id)
            .with_context(|| format!("writing keys into {}", args.out.display()))?;
    println!("{}", hex::encode(key.verifying_key().as_bytes()));
    eprintln!("wrote {} and {}", priv_path.display(), pub_path.display());
    Ok(())
}

/// Standard error, whose write failures are counted instead of reported.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // One formatted event per call; a failure loses that line.
        if std::io::Write::write_all(&mut std::io::stderr(), buf).is_err() {
            crate::metrics::meters().count_log_line_lost();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::Write::flush(&mut std::io::stderr());
        Ok(())
    }
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FABRIC_LOG")
        .unwrap_or_else(|_| "info,openraft=warn".into());
    // A log that cannot be written (stderr redirected to a file on a full disk, a closed
    // pipe) loses lines, counted in `fabric_log_lines_lost`, and the master goes on serving:
    // tracing-subscriber would otherwise report the failure with `eprint!`, which panics
    // when stderr fails, and take the process down at its next log line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
