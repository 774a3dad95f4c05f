//! Cross-crate tests: the app's core against the real server process, and the real
//! desktop app driven over WebDriver. Run by `cargo xtask test`, which provides Xvfb,
//! a D-Bus session with an unlocked gnome-keyring, tauri-driver and WebKitWebDriver.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app_full_disk;
mod break_glass;
mod change_kill;
mod core_flow;
mod e2e_conflict;
mod e2e_desktop;
mod e2e_import;
mod e2e_offline_scope;
mod first_password;
mod front_desk;
mod key_rotation;
mod keys_at_rest;
mod lifecycle;
mod outbox_kill;
mod password_change;
mod rollback;
mod security_key;
mod server_kill;
mod tamper_alerts;
mod transport_scan;
