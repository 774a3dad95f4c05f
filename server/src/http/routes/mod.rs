//! HTTP handlers, one module per resource. A handler parses its input (through
//! [`crate::http::extract`]), makes one call into a domain module or the store, and shapes
//! the answer; authorization already happened in [`crate::http::authorize`].
//!
//! Must not hold domain rules or SQL: a handler that needs more than one call has found a
//! domain function that is missing.

pub mod audit;
pub mod break_glass;
pub mod care_team;
pub mod clinic;
pub mod clinics;
pub mod coverage;
pub mod devices;
pub mod health;
pub mod hours;
pub mod imports;
pub mod mfa;
pub mod patients;
pub mod records;
pub mod schedule;
pub mod session;
pub mod users;
