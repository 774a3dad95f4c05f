//! The ClinicDesk desktop app. The client core is plain Rust, testable without a webview,
//! in folders by job:
//!
//! - [`core`]: [`core::Core`], the app's state: a device part (enrollment, keychain,
//!   outbox and its upload, wipe) and a session part (sign-in, second factor, lock, PHI
//!   reads, admin work), locked in one order that the types enforce.
//! - [`local`]: what the workstation keeps in SQLCipher: users' caches and the outbox.
//! - [`secrets`]: the keychain, the device secret and what derives from it, the device
//!   and recovery keys, sealed on disk.
//! - [`net`]: the HTTPS client pinned to the enrollment's CA, and receipt checks.
//! - [`os`]: the clocks, the idle watch, OS lock signals and security keys.
//!
//! At the root: [`error`] (the one error type), [`config`] (settings and file layout),
//! [`files`] (small files written atomically), [`log_filter`]. [`commands`] is the thin
//! Tauri layer over [`core::Core`], and the only module that imports tauri.
//!
//! Layering: `commands` → `core` → {`local`, `secrets`, `net`, `os`}; `local` → `secrets`; every
//! folder may use `error`, `config` and `files`, and nothing imports `commands` or (outside
//! `commands`) `core`.

#[cfg(feature = "shell")]
pub mod commands;
pub mod config;
pub mod core;
pub mod error;
pub mod files;
pub mod local;
pub mod log_filter;
pub mod net;
pub mod os;
pub mod secrets;

pub use error::AppError;
