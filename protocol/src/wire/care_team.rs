//! `/v1/patients/{id}/care-team`: who reads a patient's chart without breaking the glass.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A member of the clinic's staff as a care team shows them: no PHI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StaffMember {
    pub user_id: Uuid,
    pub display_name: String,
}

/// The clinicians who read a patient's chart without break-glass, and the clinic's active
/// clinicians who could be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CareTeam {
    pub patient_id: Uuid,
    /// By display name.
    pub members: Vec<StaffMember>,
    /// Active clinicians of the clinic not on the team, by display name.
    pub others: Vec<StaffMember>,
}

/// Puts a clinician on a patient's care team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CareTeamAddition {
    pub clinician_id: Uuid,
}
