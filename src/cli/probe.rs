//! `fabric-master probe`: a health check from inside the container (a `FROM scratch` image
//! has no curl): GET a path of the local listener, exit 0 on 200 and 1 otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The replica's WebSocket/HTTP listen address (a wildcard address is probed on loopback).
    #[arg(long, env = "FABRIC_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// What to ask: /healthz (the process serves) or /readyz (it takes sessions).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// The listener serves TLS (--tls-cert); the probe does not check the certificate.
    #[arg(long, env = "FABRIC_PROBE_TLS")]
    pub tls: bool,
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

pub fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let mut addr = args.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        args.path
    );
    let mut answer = Vec::new();
    if args.tls {
        let mut connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())?;
        connector.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let mut stream = connector
            .build()
            .configure()?
            .verify_hostname(false)
            .connect("localhost", tcp)
            .map_err(|e| anyhow::anyhow!("TLS handshake with {addr}: {e}"))?;
        stream.write_all(request.as_bytes())?;
        let _ = stream.read_to_end(&mut answer);
    } else {
        let mut stream = tcp;
        stream.write_all(request.as_bytes())?;
        let _ = stream.read_to_end(&mut answer);
    }
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if status_line.split_whitespace().nth(1) == Some("200") {
        println!("{status_line}");
        Ok(())
    } else {
        bail!("{addr}{}: {status_line:?}", args.path)
    }
}
