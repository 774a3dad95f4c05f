//! Key material and where it lives: the OS keychain ([`keychain`]), the device secret and
//! what derives from it ([`keys`]), the device key ([`device_key`]) and the recovery key
//! ([`recovery_key`]) sealed on disk ([`sealed`]). Keys live in the keychain or in
//! `Zeroizing` memory; on disk a key is only ever sealed under another (BRIEF 4).
//!
//! Imports only the crate root's `error`, `config` and `files`. Must not import
//! `crate::local`, `crate::net`, `crate::os` or `crate::core`: the other folders use keys,
//! keys use nothing of theirs.

pub mod device_key;
pub mod keychain;
pub mod keys;
pub mod recovery_key;
pub mod sealed;
