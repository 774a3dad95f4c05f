//! The audit trail on the server: the signing key, ingest of device batches, the
//! per-clinic Merkle log with checkpoints and proofs, search, and the verifier.

pub mod ingest;
pub mod key;
pub mod log;
pub mod query;
pub mod synthetic;
pub mod verify;
