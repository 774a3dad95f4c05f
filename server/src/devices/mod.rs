//! Workstations: the admins' registry of enrolled devices (enrollment, listing, revocation)
//! and the escrow of their device secrets. Domain code: no axum (it must not import
//! `crate::http`).

pub mod escrow;
pub mod registry;
