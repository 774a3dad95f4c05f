//! The ClinicDesk desktop app. The client core is plain Rust, testable without a webview:
//!
//! - [`keychain`]: secrets in the OS keychain (Secret Service on Linux).
//! - [`device`]: this workstation's enrollment and Ed25519 device key.
//! - [`client`]: the HTTPS client that trusts only the CA pinned at enrollment.
//! - [`cache`]: the SQLCipher cache of fetched records, with the audit [`outbox`] inside.
//! - [`session`]: sign-in, idle lock and unlock: the `Locked`/`Unlocked` state machine.
//! - [`sync`]: the background audit uploader.
//!
//! [`commands`] is the thin Tauri layer over [`session::Core`].

pub mod cache;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod device;
pub mod error;
pub mod keychain;
pub mod outbox;
pub mod session;
pub mod sync;

pub use error::AppError;
