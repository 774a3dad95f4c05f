//! Clinical access: who may read which chart (care teams, break-glass), the chart as its
//! reader may see it, and the schedule. Domain code: no axum (it must not import
//! `crate::http`).

pub mod break_glass;
pub mod care_team;
pub mod patients;
pub mod schedule;
