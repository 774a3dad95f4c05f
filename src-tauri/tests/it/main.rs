//! The app core's integration tests: a real SQLCipher file and a real Secret Service.

mod cache_at_rest;
mod keychain_real;
