//! The audit trail on the server: the signing key, ingest of device batches, the server's
//! own events for every PHI response, the per-clinic Merkle log with checkpoints and
//! proofs, search, and the verifier.
//!
//! A domain folder: must not import `crate::http` (no axum here) or write SQL (its
//! statements are `crate::store`'s `audit_*` families).

pub mod access;
pub mod access_review;
pub mod batch;
pub mod claims;
pub mod export;
pub mod fhir;
pub mod ingest;
pub mod key;
pub mod log;
pub mod publisher;
pub mod query;
pub mod report;
pub mod rollback;
pub mod server_chain;
pub mod sign_in;
pub mod synthetic;
pub mod verify;
pub mod verify_export;
