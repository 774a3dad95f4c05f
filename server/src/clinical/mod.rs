//! Clinical access: who may read which chart (care teams, break-glass), the chart as its
//! reader may see it, patient records and their history, and the schedule. Domain code: no axum (it must not import
//! `crate::http`).

pub mod booking;
pub mod break_glass;
pub mod care_team;
pub mod coverage;
pub mod day_patients;
pub mod days;
pub mod fhir_everything;
/// A record as a FHIR R4 `Patient` and back: in the protocol, pure mapping that the fuzzer
/// reaches (`fuzz/fuzz_targets/fhir_patient.rs`).
pub use clinicdesk_protocol::fhir_patient;
pub mod hours;
pub mod patients;
pub mod records;
pub mod schedule;
pub mod sensitive;
pub mod sync_patients;
