//! Clinical access: who may read which chart (care teams, break-glass). Domain code: no axum
//! (it must not import `crate::http`).

pub mod break_glass;
pub mod care_team;
