//! The contract between the ClinicDesk server, desktop app and UI.
//!
//! Everything here compiles for wasm32 as well as the host: plain data, the role policy
//! table and the canonical audit event encoding. Cryptography with keys lives in the
//! server and the app; this crate only says which bytes get hashed and signed.

pub mod app;
pub mod audit;
pub mod error;
pub mod export;
pub mod fhir_patient;
pub mod fhir_records;
pub mod merkle;
pub mod phi;
pub mod policy;
pub mod proof;
pub mod rotation;
pub mod secret;
#[cfg(feature = "signatures")]
pub mod signature;
pub mod wire;

pub use error::{ApiError, ErrorCode};
pub use phi::Phi;
pub use policy::{Access, Permission, Role};
pub use secret::Secret;
/// The second factor's bodies, at their old path.
pub use wire::mfa;
