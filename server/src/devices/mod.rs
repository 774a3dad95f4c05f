//! Workstations: the admins' registry of enrolled devices, enrollment and escrow. Domain
//! code: no axum (it must not import `crate::http`).

pub mod registry;
