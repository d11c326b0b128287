//! `fabric-master certs ca | issue`: the peer port's mutual-TLS material.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub action: CertsAction,
}

#[derive(Subcommand, Debug)]
pub enum CertsAction {
    /// Make a new cluster CA: DIR/ca.pem (for every replica and operator) and DIR/ca.key
    /// (keep it offline; it issues certificates).
    Ca {
        #[arg(long)]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate from the CA in --ca-dir: OUT/NAME.pem and OUT/NAME.key. The same
    /// certificate serves a replica (server and client) or an operator (client).
    Issue {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Common name, and the file name stem (e.g. `replica-1`, `admin`).
        #[arg(long)]
        name: String,
        /// Extra subject names (host names or IP addresses) besides `fabric-master-peer`.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

pub fn certs(args: CertsArgs) -> anyhow::Result<()> {
    match args.action {
        CertsAction::Ca { dir, days } => {
            let path = crate::tls::make_ca(&dir, days)
                .with_context(|| format!("making a CA in {}", dir.display()))?;
            eprintln!("wrote {} and its key", path.display());
        }
        CertsAction::Issue {
            ca_dir,
            out,
            name,
            sans,
            days,
        } => {
            let (cert, key) = crate::tls::issue(&ca_dir, &out, &name, &sans, days)
                .with_context(|| format!("issuing {name} from the CA in {}", ca_dir.display()))?;
            eprintln!("wrote {} and {}", cert.display(), key.display());
        }
    }
    Ok(())
}
