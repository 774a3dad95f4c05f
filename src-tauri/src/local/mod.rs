//! What the workstation keeps on disk in SQLCipher: the opening of an encrypted database
//! ([`db`]), one user's cache of records ([`cache`]), its search ([`patient_search`]) and
//! its queue of changes for the server ([`changes`]), what a role may read of it
//! ([`minimum`]),
//! the per-user caches and their wrapped keys ([`users`]), and the device's audit outbox
//! ([`outbox`]). PHI on disk lives here and nowhere else (BRIEF 4).
//!
//! May import `crate::secrets` (keys that wrap the caches, the device key that signs the
//! outbox) and the crate root's `error`, `config` and `files`. Must not import
//! `crate::net`, `crate::os` or `crate::core`: nothing here talks to the server, to the OS
//! session, or knows who is signed in.

pub mod cache;
pub mod changes;
pub mod db;
pub mod minimum;
pub mod outbox;
pub mod patient_search;
pub mod users;
