//! The ClinicDesk desktop app. The client core is plain Rust, testable without a webview:
//!
//! - [`keychain`]: secrets in the OS keychain (Secret Service on Linux), no fallback.
//! - [`keys`]: the device secret and what derives from it; per-user cache-key wrapping.
//! - [`device`]: this workstation's enrollment and Ed25519 device key; [`recovery_key`]:
//!   the key that gets a lost device secret back from the server's escrow; [`sealed`]:
//!   how those keys are stored.
//! - [`client`]: the HTTPS client that trusts only the CA pinned at enrollment.
//! - [`db`]: opening SQLCipher databases; [`cache`]: one user's cached records, found
//!   by name, date of birth or MRN through [`patient_search`];
//!   [`users`]: the per-user caches on this workstation; [`outbox`]: the device's
//!   signed audit chain waiting for upload.
//! - [`security_key`]: the authenticators the WebAuthn second factor runs on.
//! - [`session`]: sign-in, lock, unlock, switch user, sign out, wipe: the state machine.
//! - [`sync`]: the idle watch and the background audit uploader; [`os_lock`]: locking
//!   when the OS session locks or the machine suspends.
//!
//! [`commands`] is the thin Tauri layer over [`session::Core`]; [`log_filter`] says what
//! the app logs.

pub mod cache;
pub mod client;
pub mod clock;
#[cfg(feature = "shell")]
pub mod commands;
pub mod config;
pub mod db;
pub mod device;
pub mod error;
pub mod keychain;
pub mod keys;
pub mod log_filter;
pub mod os_lock;
pub mod outbox;
pub mod patient_search;
pub mod receipt;
pub mod recovery_key;
pub mod sealed;
pub mod security_key;
pub mod session;
pub mod sync;
pub mod users;

pub use error::AppError;
