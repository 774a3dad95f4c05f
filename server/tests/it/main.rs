//! The server's integration tests: one binary, a real TLS server on loopback per test.

mod api;
mod harness;
mod tls_versions;
