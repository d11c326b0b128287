//! Command line: `fabric-master start | keygen | version | bench`.

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
        Ok(Settings::from_file(file))
    }
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

pub fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FABRIC_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
