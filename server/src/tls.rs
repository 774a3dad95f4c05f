//! TLS-only serving: a local CA and server certificate generated under the data directory
//! on first start (for the embedded default and the demo), TLS 1.2 and 1.3 only, and the
//! accept loop that hands decrypted connections to hyper.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot write TLS material under the data directory")]
    Write(#[source] std::io::Error),
    #[error("cannot read TLS material: {0}")]
    Read(&'static str),
    #[error("certificate generation failed")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected")]
    Config(#[from] rustls::Error),
    #[error(
        "partial TLS material under the data directory: {0} is missing; remove tls/ to regenerate"
    )]
    Partial(&'static str),
}

/// Paths of the TLS material under `DIR/tls`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsFiles {
    pub fn under(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// Creates the local CA and a server certificate for localhost, 127.0.0.1 and ::1 unless
/// they exist. The CA's private key is used once and never written: the demo server's
/// certificate is the only one it ever signs.
pub fn ensure_local_ca(data_dir: &Path) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles::under(data_dir);
    let present = [&files.ca_cert, &files.server_cert, &files.server_key].map(|p| p.exists());
    if present.iter().all(|p| *p) {
        return Ok(files);
    }
    if present.iter().any(|p| *p) {
        let missing = if !present[0] {
            "tls/ca.pem"
        } else if !present[1] {
            "tls/server.pem"
        } else {
            "tls/server.key"
        };
        return Err(TlsError::Partial(missing));
    }

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "ClinicDesk Local CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "ClinicDesk server");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    let dir = files.ca_cert.parent().ok_or(TlsError::Read("tls dir"))?;
    fs::create_dir_all(dir).map_err(TlsError::Write)?;
    write_file(&files.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&files.server_cert, server_cert.pem().as_bytes(), 0o644)?;
    write_file(
        &files.server_key,
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok(files)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options.open(path).map_err(TlsError::Write)?;
    f.write_all(bytes).map_err(TlsError::Write)?;
    f.sync_all().map_err(TlsError::Write)
}

/// rustls server configuration: TLS 1.3 and 1.2 only, ring provider, HTTP/2 and 1.1.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(&files.server_cert)
        .map_err(|_| TlsError::Read("tls/server.pem"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Read("tls/server.pem"))?;
    let key = PrivateKeyDer::from_pem_file(&files.server_key)
        .map_err(|_| TlsError::Read("tls/server.key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections forever, serving `router` on each. A failed handshake (an old
/// protocol version, a plain-HTTP client) closes that connection and nothing else.
pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, router: Router) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move { serve_connection(acceptor, tcp, peer, router).await });
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "tls handshake refused");
            return;
        }
    };
    // The peer address travels with every request (audit events record it).
    let service = TowerToHyperService::new(tower::Layer::layer(
        &axum::Extension(axum::extract::ConnectInfo(peer)),
        router,
    ));
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}
