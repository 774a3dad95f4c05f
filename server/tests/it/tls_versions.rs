//! Transport security: the server speaks TLS 1.2 and 1.3 and refuses older versions. The
//! same OpenSSL client is used for both, differing only in the protocol version it offers.

use std::io::{Read, Write};
use std::net::TcpStream;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};

use crate::harness::TestServer;

fn connect(port: u16, ca_pem: &[u8], version: SslVersion) -> Result<String, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    // Security level 0 lets OpenSSL 3 offer TLS 1.1 at all, so the refusal is the server's.
    builder
        .set_cipher_list("DEFAULT:@SECLEVEL=0")
        .map_err(|e| e.to_string())?;
    builder
        .set_min_proto_version(Some(version))
        .map_err(|e| e.to_string())?;
    builder
        .set_max_proto_version(Some(version))
        .map_err(|e| e.to_string())?;
    let ca = openssl::x509::X509::from_pem(ca_pem).map_err(|e| e.to_string())?;
    builder
        .cert_store_mut()
        .add_cert(ca)
        .map_err(|e| e.to_string())?;
    builder.set_verify(SslVerifyMode::PEER);
    let connector = builder.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect("localhost", tcp)
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tls.read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response)
}

fn port_of(server: &TestServer) -> u16 {
    server.url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_tls_1_1_and_serves_tls_1_2_and_1_3() {
    let server = TestServer::start().await;
    let port = port_of(&server);
    let ca = server.ca_pem.clone();
    let results = tokio::task::spawn_blocking(move || {
        [SslVersion::TLS1_1, SslVersion::TLS1_2, SslVersion::TLS1_3].map(|v| connect(port, &ca, v))
    })
    .await
    .unwrap();
    let [tls11, tls12, tls13] = results;
    let err = tls11.expect_err("TLS 1.1 must be refused");
    assert!(err.starts_with("handshake"), "{err}");
    let ok12 = tls12.expect("TLS 1.2 is served");
    assert!(ok12.starts_with("HTTP/1.1 200"), "{ok12}");
    assert!(ok12.contains("strict-transport-security"));
    let ok13 = tls13.expect("TLS 1.3 is served");
    assert!(ok13.starts_with("HTTP/1.1 200"), "{ok13}");
}

/// Plain HTTP on the TLS port gets no HTTP answer (at most a TLS alert record), and the
/// server is alive and serving TLS on that same port before and after.
#[tokio::test(flavor = "multi_thread")]
async fn plain_http_gets_no_answer() {
    let server = TestServer::start().await;
    let port = port_of(&server);
    let ca = server.ca_pem.clone();
    let (before, reply, after) = tokio::task::spawn_blocking(move || {
        let before = connect(port, &ca, SslVersion::TLS1_3);
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut reply = Vec::new();
        let _ = tcp.read_to_end(&mut reply);
        (before, reply, connect(port, &ca, SslVersion::TLS1_3))
    })
    .await
    .unwrap();
    assert!(
        before.unwrap().starts_with("HTTP/1.1 200"),
        "served over TLS"
    );
    // 0x15: a TLS alert record; anything else would be an answer in the clear.
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "plain HTTP got an answer: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(!String::from_utf8_lossy(&reply).contains("HTTP/"));
    assert!(
        after.unwrap().starts_with("HTTP/1.1 200"),
        "still serving TLS"
    );
}
