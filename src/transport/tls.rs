//! TLS on the WebSocket listener (`--tls-cert`/`--tls-key`), and the channel bindings it gives
//! cryptosign.
//!
//! OpenSSL rather than rustls (which the peer port uses): Crossbar's clients bind cryptosign to
//! `tls-unique`, the SHA-256 of the first Finished message of the handshake (RFC 5929, as
//! `autobahn` computes it), and rustls does not expose Finished messages. `tls-exporter`
//! (RFC 9266) is offered as well.
//!
//! The certificate and key are read again on reload (SIGHUP): new connections use the new
//! ones, open ones carry on.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslRef};
use parking_lot::RwLock;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

#[derive(Debug, thiserror::Error)]
pub enum ListenerTlsError {
    #[error("TLS certificate {path}: {source}")]
    Certificate {
        path: PathBuf,
        source: openssl::error::ErrorStack,
    },
    #[error("TLS key {path}: {source}")]
    Key {
        path: PathBuf,
        source: openssl::error::ErrorStack,
    },
    #[error("TLS setup: {0}")]
    Setup(#[from] openssl::error::ErrorStack),
    #[error("TLS handshake: {0}")]
    Handshake(#[from] openssl::ssl::Error),
}

/// What a connection's TLS layer lets a client bind its authentication to; empty on plain
/// TCP.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelBinding {
    /// RFC 5929 `tls-unique`, hashed with SHA-256 as Crossbar and autobahn do.
    pub tls_unique: Option<[u8; 32]>,
    /// RFC 9266 `tls-exporter`: 32 bytes exported with label `EXPORTER-Channel-Binding`.
    pub tls_exporter: Option<[u8; 32]>,
}

impl ChannelBinding {
    /// The channel id of binding type `kind` (`tls-unique`, `tls-exporter`), if this
    /// connection has one.
    pub fn id(&self, kind: &str) -> Option<[u8; 32]> {
        match kind {
            "tls-unique" => self.tls_unique,
            "tls-exporter" => self.tls_exporter,
            _ => None,
        }
    }

    pub const KINDS: [&'static str; 2] = ["tls-unique", "tls-exporter"];
}

/// The listener's certificate and key, swapped whole on reload.
pub struct ListenerTls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: RwLock<Arc<SslAcceptor>>,
}

impl ListenerTls {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ListenerTls>, ListenerTlsError> {
        let acceptor = acceptor(cert, key)?;
        Ok(Arc::new(ListenerTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            acceptor: RwLock::new(Arc::new(acceptor)),
        }))
    }

    /// Reads the files again; on any error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), ListenerTlsError> {
        let acceptor = acceptor(&self.cert, &self.key)?;
        *self.acceptor.write() = Arc::new(acceptor);
        Ok(())
    }

    /// The server side of a TLS handshake, and the bindings of the resulting channel.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(SslStream<TcpStream>, ChannelBinding), ListenerTlsError> {
        let acceptor = self.acceptor.read().clone();
        let ssl = Ssl::new(acceptor.context())?;
        let mut stream = SslStream::new(ssl, tcp)?;
        Pin::new(&mut stream).accept().await?;
        let binding = channel_binding(stream.ssl());
        Ok((stream, binding))
    }
}

fn acceptor(cert: &Path, key: &Path) -> Result<SslAcceptor, ListenerTlsError> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|source| ListenerTlsError::Certificate {
            path: cert.to_owned(),
            source,
        })?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(|source| ListenerTlsError::Key {
            path: key.to_owned(),
            source,
        })?;
    builder
        .check_private_key()
        .map_err(|source| ListenerTlsError::Key {
            path: key.to_owned(),
            source,
        })?;
    Ok(builder.build())
}

fn channel_binding(ssl: &SslRef) -> ChannelBinding {
    // tls-unique is the first Finished message of the handshake: the client's on a full
    // handshake, the server's (ours) on a resumed one (RFC 5929 §3.1; CPython's
    // get_channel_binding, which autobahn uses, picks it the same way).
    let mut finished = [0u8; 128];
    let n = if ssl.session_reused() {
        ssl.finished(&mut finished)
    } else {
        ssl.peer_finished(&mut finished)
    };
    let tls_unique = (n > 0 && n <= finished.len()).then(|| openssl::sha::sha256(&finished[..n]));
    let mut exported = [0u8; 32];
    let tls_exporter = ssl
        .export_keying_material(&mut exported, "EXPORTER-Channel-Binding", Some(&[]))
        .ok()
        .map(|()| exported);
    ChannelBinding {
        tls_unique,
        tls_exporter,
    }
}
