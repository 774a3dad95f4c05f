//! TLS-only serving: a local CA generated under the data directory on first start (for the
//! embedded default and the demo) that issues the server short-lived certificates in
//! memory, TLS 1.2 and 1.3 only, and the accept loop that hands decrypted connections to
//! hyper.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::RwLock;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
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
    /// The local CA's certificate: what workstations pin at enrollment.
    pub ca_cert: PathBuf,
    /// The local CA's key (0600): it signs the server's short-lived certificates.
    pub ca_key: PathBuf,
    /// A data directory made before certificates were short-lived has no CA key, only a
    /// long-lived server certificate and key, which it keeps serving.
    pub legacy_server_cert: PathBuf,
    pub legacy_server_key: PathBuf,
}

impl TlsFiles {
    pub fn under(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            legacy_server_cert: dir.join("server.pem"),
            legacy_server_key: dir.join("server.key"),
        }
    }
}

/// How long a server certificate lives, and how long before its end it is replaced.
const LEAF_LIFETIME: time::Duration = time::Duration::days(90);
const RENEW_BEFORE_END: time::Duration = time::Duration::days(30);

const CA_NAME: &str = "ClinicDesk Local CA";

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, CA_NAME);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(ca)
}

/// Creates the local CA (certificate and key) under `DIR/tls` unless it exists.
pub fn ensure_local_ca(data_dir: &Path) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles::under(data_dir);
    if files.ca_cert.exists() {
        let legacy = files.legacy_server_cert.exists() && files.legacy_server_key.exists();
        return match (files.ca_key.exists(), legacy) {
            (true, _) | (false, true) => Ok(files),
            (false, false) => Err(TlsError::Partial("tls/ca.key")),
        };
    }
    if files.ca_key.exists() {
        return Err(TlsError::Partial("tls/ca.pem"));
    }
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params()?.self_signed(&ca_key)?;
    let dir = files.ca_cert.parent().ok_or(TlsError::Read("tls dir"))?;
    crate::store::private_files::private_dir(dir).map_err(TlsError::Write)?;
    write_file(&files.ca_key, ca_key.serialize_pem().as_bytes(), 0o600)?;
    // Public, but everything under the data directory is its owner's alone.
    write_file(&files.ca_cert, ca_cert.pem().as_bytes(), 0o600)?;
    Ok(files)
}

/// The server's certificates, issued in memory by the local CA for localhost, 127.0.0.1
/// and ::1: 90 days each, replaced during the handshake that finds fewer than 30 days
/// left. The server's private key is never written anywhere.
struct LocalCaCerts {
    ca_key: KeyPair,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, OffsetDateTime)>,
}

impl std::fmt::Debug for LocalCaCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCaCerts")
    }
}

impl LocalCaCerts {
    fn new(files: &TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let pem = fs::read_to_string(&files.ca_key).map_err(|_| TlsError::Read("tls/ca.key"))?;
        let ca_key = KeyPair::from_pem(&pem)?;
        let first = issue(&ca_key, &provider)?;
        Ok(Self {
            ca_key,
            provider,
            current: RwLock::new(first),
        })
    }
}

/// A fresh server certificate and key, and when to replace it.
fn issue(
    ca_key: &KeyPair,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, OffsetDateTime), TlsError> {
    let issuer = ca_params()?.self_signed(ca_key)?;
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "ClinicDesk server");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - time::Duration::minutes(5);
    leaf.not_after = now + LEAF_LIFETIME;
    let cert = leaf.signed_by(&key, &issuer, ca_key)?;
    let signing = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))?;
    Ok((
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
        now + LEAF_LIFETIME - RENEW_BEFORE_END,
    ))
}

impl ResolvesServerCert for LocalCaCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl LocalCaCerts {
    /// The certificate to present, replaced first when its renewal time has come.
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let due = self
            .current
            .read()
            .map(|c| OffsetDateTime::now_utc() >= c.1)
            .unwrap_or(true);
        if due {
            match issue(&self.ca_key, &self.provider) {
                Ok(fresh) => {
                    if let Ok(mut c) = self.current.write() {
                        *c = fresh;
                    }
                }
                // The old certificate is still valid for weeks; try again next handshake.
                Err(e) => tracing::warn!(error = %e, "renewing the server certificate failed"),
            }
        }
        self.current.read().ok().map(|c| Arc::clone(&c.0))
    }
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

/// rustls server configuration: TLS 1.3 and 1.2 only, ring provider, the server's own
/// cipher suite order (strongest first), HTTP/2 and 1.1.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth();
    let mut config = if files.ca_key.exists() {
        builder.with_cert_resolver(Arc::new(LocalCaCerts::new(files, provider)?))
    } else {
        let certs = CertificateDer::pem_file_iter(&files.legacy_server_cert)
            .map_err(|_| TlsError::Read("tls/server.pem"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TlsError::Read("tls/server.pem"))?;
        let key = PrivateKeyDer::from_pem_file(&files.legacy_server_key)
            .map_err(|_| TlsError::Read("tls/server.key"))?;
        builder.with_single_cert(certs, key)?
    };
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections forever, serving `router` on each. A failed handshake (an old
/// protocol version, a plain-HTTP client) closes that connection and nothing else.
/// What one connection may take of the server: a client that does not finish its TLS
/// handshake, or send a request's headers, in time is closed; at most `max_connections` are
/// open at once (further clients wait in the listen backlog until one closes).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake: Duration,
    pub headers: Duration,
}

/// Connections held open at most, whatever the descriptor limit allows.
pub const MAX_CONNECTIONS: usize = 4_096;
/// Descriptors kept back from connections: the database's, the key files', the log's.
const RESERVED_DESCRIPTORS: u64 = 64;
/// The longest pause between tries when `accept` fails (out of descriptors, mostly).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Limits {
    /// Ten seconds for a handshake and for a request's headers; connections capped below
    /// this process's descriptor limit, so that the database and the log can still open
    /// files when every connection is taken.
    pub fn for_this_process() -> Self {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let room = soft.map_or(MAX_CONNECTIONS as u64, |n| {
            n.saturating_sub(RESERVED_DESCRIPTORS).max(16)
        });
        Self {
            max_connections: usize::try_from(room)
                .unwrap_or(MAX_CONNECTIONS)
                .min(MAX_CONNECTIONS),
            handshake: Duration::from_secs(10),
            headers: Duration::from_secs(10),
        }
    }
}

pub async fn serve(listener: TcpListener, config: Arc<ServerConfig>, router: Router) {
    serve_within(listener, config, router, Limits::for_this_process()).await;
}

/// The accept loop. A connection holds one of `limits.max_connections` permits from accept
/// to close; when none is free the loop stops accepting, so an idle crowd waits in the
/// kernel's backlog instead of using up descriptors. When `accept` fails (out of
/// descriptors, mostly), the loop waits, longer each time up to a second, instead of
/// spinning, and logs the first failure of a run only.
pub async fn serve_within(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: Router,
    limits: Limits,
) {
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::ZERO;
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => {
                backoff = Duration::ZERO;
                pair
            }
            Err(e) => {
                if backoff.is_zero() {
                    tracing::warn!(error = %e, "accept failed; backing off until it succeeds");
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), ACCEPT_BACKOFF_MAX);
                drop(permit);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        // Answers go out when written: with Nagle's algorithm a response's last TLS record
        // could wait for the client's delayed acknowledgement of the one before.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            serve_connection(acceptor, tcp, peer, router, limits).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
) {
    let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "tls handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "tls handshake timed out");
            return;
        }
    };
    // The peer address travels with every request (audit events record it).
    let service = TowerToHyperService::new(tower::Layer::layer(
        &axum::Extension(axum::extract::ConnectInfo(peer)),
        router,
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.headers);
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_server_certificate_is_replaced_when_its_renewal_time_comes() {
        let dir = tempfile::tempdir().unwrap();
        let files = ensure_local_ca(dir.path()).unwrap();
        let ca_pem = fs::read(&files.ca_cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&files.ca_key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the CA key is readable by its owner only");
        }
        assert!(!files.legacy_server_key.exists(), "no server key on disk");
        let certs =
            LocalCaCerts::new(&files, Arc::new(rustls::crypto::ring::default_provider())).unwrap();
        let first = certs.current().unwrap();
        let renew_at = certs.current.read().unwrap().1;
        let in_sixty_days = OffsetDateTime::now_utc() + time::Duration::days(60);
        assert!((renew_at - in_sixty_days).abs() < time::Duration::minutes(1));
        assert!(
            Arc::ptr_eq(&first, &certs.current().unwrap()),
            "kept until then"
        );

        certs.current.write().unwrap().1 = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        let second = certs.current().unwrap();
        assert!(!Arc::ptr_eq(&first, &second), "a new certificate");
        assert_ne!(first.cert[0], second.cert[0]);
        assert!(certs.current.read().unwrap().1 > OffsetDateTime::now_utc());
        // The CA the workstations pinned is untouched (every TLS test's client trusts only
        // it, so the chain is checked there).
        assert_eq!(fs::read(&files.ca_cert).unwrap(), ca_pem);
    }
}
