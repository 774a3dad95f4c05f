//! The app core's integration tests: a real SQLCipher file and a real Secret Service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache_at_rest;
mod keychain_real;
