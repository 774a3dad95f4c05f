//! Talking to the ClinicDesk server: the HTTPS client that trusts only the CA pinned at
//! enrollment ([`client`]), the enrollment record that pinned it ([`enrollment`]), and the
//! check of the server's signed audit receipts ([`receipt`]).
//!
//! Must not import `crate::core`, `crate::local`, `crate::secrets` or `crate::os`: it
//! sends what it is given and checks what comes back, and keeps nothing (no state, no
//! key, no PHI). Only the crate root's `error`, `config` and `files` are shared.

pub mod client;
pub mod enrollment;
pub mod receipt;
