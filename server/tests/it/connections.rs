//! The real server binary under a low descriptor limit (`ulimit -n 256`), with 300 idle
//! TCP connections held open, one that starts a TLS handshake and goes silent, and one that
//! sends half an HTTP request: other clients are still served, the stalled connections are
//! closed, the log does not flood with accept failures, and it recovers when they go.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the test waits for each thing the server should do by itself.
const PATIENCE: Duration = Duration::from_secs(45);

struct Server {
    child: std::process::Child,
    addr: String,
    ca: std::path::PathBuf,
    accept_failures: Arc<AtomicUsize>,
    log_bytes: Arc<AtomicUsize>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_limited(fds: u32) -> Server {
    use std::io::BufRead;
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_clinicdesk-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--key-dir")
        .arg(keys.path())
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let rest = first.strip_prefix("listening https://").unwrap();
    let (addr, ca) = rest.split_once(" ca=").unwrap();
    let accept_failures = Arc::new(AtomicUsize::new(0));
    let log_bytes = Arc::new(AtomicUsize::new(0));
    let stderr = child.stderr.take().unwrap();
    let (failures, bytes) = (Arc::clone(&accept_failures), Arc::clone(&log_bytes));
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            bytes.fetch_add(line.len() + 1, Ordering::Relaxed);
            if line.contains("accept failed") {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Server {
        child,
        addr: addr.to_owned(),
        ca: ca.into(),
        accept_failures,
        log_bytes,
        _dirs: (data, keys),
    }
}

fn client(ca: &std::path::Path) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

/// Polls the health check until it answers 200: how long that took, or `None`.
async fn answered_within(server: &Server, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        // A fresh client each time: a new connection, as a new workstation would open.
        let resp = client(&server.ca)
            .get(format!("https://{}/healthz", server.addr))
            .send()
            .await;
        if resp.is_ok_and(|r| r.status() == 200) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Whether the server closes `stream` (reads end or fail) within `limit`.
fn closed_by_server(mut stream: impl Read, limit: Duration) -> bool {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// A TLS client connection over `tcp` that has finished its handshake.
fn tls_client(
    ca: &std::path::Path,
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

use rustls::pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_stalled_connections_under_a_low_descriptor_limit_starve_no_one() {
    let server = start_limited(256);
    assert!(
        answered_within(&server, PATIENCE).await.is_some(),
        "the server starts"
    );

    // Half an HTTP request over a finished handshake, then silence.
    let half = TcpStream::connect(&server.addr).unwrap();
    half.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut half = tls_client(&server.ca, half);
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    half.flush().unwrap();
    // The first bytes of a ClientHello (a record header promising 512 bytes), then silence.
    let mut hello = TcpStream::connect(&server.addr).unwrap();
    hello.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    hello
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // A connection that never says anything.
    let silent = TcpStream::connect(&server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // And 300 more like it: more than the server may hold open at once.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();

    // Others are served while all of that is held.
    let waited = answered_within(&server, PATIENCE).await;
    assert!(
        waited.is_some(),
        "no health check answered in {PATIENCE:?} with the idle connections held"
    );
    // The stalled ones are closed by the server, not left open forever.
    let closed = tokio::task::spawn_blocking(move || {
        [
            closed_by_server(half, PATIENCE),
            closed_by_server(hello, PATIENCE),
            closed_by_server(silent, PATIENCE),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        closed,
        [true, true, true],
        "half request, ClientHello, silent"
    );
    let failures = server.accept_failures.load(Ordering::Relaxed);
    let log = server.log_bytes.load(Ordering::Relaxed);
    assert!(
        failures <= 50 && log <= 64 * 1024,
        "the log floods: {failures} accept failures, {log} bytes"
    );

    // When they go, it answers at once.
    drop(idle);
    let recovered = answered_within(&server, Duration::from_secs(10)).await;
    assert!(recovered.is_some(), "the server recovers");
}
