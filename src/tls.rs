//! Mutual TLS on the peer port: every replica and every operator command (`cluster`,
//! `state`, `backup`) presents a certificate signed by the cluster's CA, and trusts only
//! certificates signed by it. Anyone who can reach the peer port but holds no such
//! certificate gets no RPC at all: the handshake fails before gRPC starts.
//!
//! Certificates name [`PEER_SERVER_NAME`] (plus any addresses given), and clients verify that
//! name rather than the address they dialled, so a replica's certificate stays valid when
//! its address changes (pods, containers); what is checked is "signed by our CA".
//!
//! The material is reloaded from its files on demand (`server` does it on SIGHUP): new
//! connections use the new certificate and trust list, established ones carry on, so a
//! certificate, or the CA itself, can be rotated without downtime (README: "Peer TLS").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The name every peer certificate carries and every client verifies.
pub const PEER_SERVER_NAME: &str = "fabric-master-peer";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where a replica's or a client's TLS material lives.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate(s) to trust; several PEM blocks while a CA is being rolled.
    pub ca: PathBuf,
    /// This side's certificate (chain), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

struct Material {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
}

/// The loaded material, swapped whole on reload.
pub struct PeerTls {
    files: TlsFiles,
    material: RwLock<Arc<Material>>,
    /// Bumped by every reload, so client pools know to reconnect with the new material.
    generation: AtomicU64,
}

impl PeerTls {
    pub fn load(files: TlsFiles) -> Result<Arc<PeerTls>, TlsError> {
        let material = Material::read(&files)?;
        Ok(Arc::new(PeerTls {
            files,
            material: RwLock::new(Arc::new(material)),
            generation: AtomicU64::new(0),
        }))
    }

    /// Reads the files again; on any error the current material stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let material = Material::read(&self.files)?;
        *self.material.write() = Arc::new(material);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// For dialling a replica: our certificate, the CA to trust, the name to verify.
    pub fn client_config(&self) -> ClientTlsConfig {
        let m = self.material.read().clone();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&m.ca_pem))
            .identity(Identity::from_pem(&m.cert_pem, &m.key_pem))
            .domain_name(PEER_SERVER_NAME)
    }

    /// For accepting peers: requires a client certificate signed by the CA.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.material.read().server.clone())
    }
}

impl Material {
    fn read(files: &TlsFiles) -> Result<Material, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let (ca_pem, cert_pem, key_pem) = (read(&files.ca)?, read(&files.cert)?, read(&files.key)?);
        let server = server_config(files, &ca_pem, &cert_pem, &key_pem)?;
        Ok(Material {
            ca_pem,
            cert_pem,
            key_pem,
            server,
        })
    }
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn server_config(
    files: &TlsFiles,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let config = |e: &dyn std::fmt::Display| TlsError::Config(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(&files.ca, ca_pem)? {
        roots.add(ca).map_err(|e| config(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| config(&e))?;
    let chain = certificates(&files.cert, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| config(&e))?;
    // gRPC is HTTP/2; tonic's client insists on negotiating it.
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(server))
}

// ---- making a CA and certificates --------------------------------------------------------

/// The CA's files inside its directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for replicas whose clocks run a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn write(path: &Path, content: &str, private: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(err)?;
    f.write_all(content.as_bytes()).map_err(err)
}

/// Makes a new cluster CA in `dir`: `ca.pem` (give it to every replica and operator) and
/// `ca.key` (keep it where certificates are issued, nowhere else).
pub fn make_ca(dir: &Path, days: u32) -> Result<PathBuf, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "fabric-master peer CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write(&dir.join(CA_KEY), &key.serialize_pem(), true)?;
    let path = dir.join(CA_CERT);
    write(&path, &cert.pem(), false)?;
    Ok(path)
}

/// Issues a certificate named `name` from the CA in `ca_dir` into `out`: `NAME.pem` and
/// `NAME.key`. It serves as a replica's server certificate and as a client certificate
/// (replicas dial each other; operators run `cluster`, `state`, `backup`).
pub fn issue(
    ca_dir: &Path,
    out: &Path,
    name: &str,
    extra_names: &[String],
    days: u32,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| TlsError::Read { path: p, source })
    };
    let ca_key = KeyPair::from_pem(&read(ca_dir.join(CA_KEY))?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(ca_dir.join(CA_CERT))?, ca_key)?;
    let mut names = vec![PEER_SERVER_NAME.to_owned()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(out).map_err(|source| TlsError::Write {
        path: out.to_owned(),
        source,
    })?;
    let (cert_path, key_path) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
    );
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_load_as_server_and_client_material() {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(&dir.path().join("ca"), 30).unwrap();
        let (cert, key) = issue(
            &dir.path().join("ca"),
            dir.path(),
            "r1",
            &["127.0.0.1".into()],
            30,
        )
        .unwrap();
        let tls = PeerTls::load(TlsFiles { ca, cert, key }).unwrap();
        let _ = tls.acceptor();
        let _ = tls.client_config();
        tls.reload().unwrap();
        assert_eq!(tls.generation(), 1);
    }

    #[test]
    fn a_missing_or_empty_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsFiles {
            ca: empty.clone(),
            cert: empty.clone(),
            key: dir.path().join("missing.key"),
        };
        let e = PeerTls::load(files).err().unwrap().to_string();
        assert!(e.contains("missing.key"), "{e}");
        let files = TlsFiles {
            ca: empty.clone(),
            cert: empty.clone(),
            key: empty.clone(),
        };
        let e = PeerTls::load(files).err().unwrap().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
