//! `/v1/patients/{id}/break-glass` and `/v1/break-glass`: a clinician's reach outside their
//! care team, and the admins' review of it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::phi::Phi;

/// Why a clinician reads a chart outside their care team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BreakGlassReason {
    /// The patient needs care now and their own clinicians are not available.
    Emergency,
    /// Covering for a colleague who is away.
    CoveringColleague,
    /// Coordinating care the patient receives elsewhere (referral, discharge, results).
    ContinuityOfCare,
    /// Anything else; the text must say what.
    Other,
}

impl BreakGlassReason {
    pub const ALL: [BreakGlassReason; 4] = [
        BreakGlassReason::Emergency,
        BreakGlassReason::CoveringColleague,
        BreakGlassReason::ContinuityOfCare,
        BreakGlassReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakGlassReason::Emergency => "emergency",
            BreakGlassReason::CoveringColleague => "covering_colleague",
            BreakGlassReason::ContinuityOfCare => "continuity_of_care",
            BreakGlassReason::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// How the app names the reason.
    pub fn label(self) -> &'static str {
        match self {
            BreakGlassReason::Emergency => "Emergency",
            BreakGlassReason::CoveringColleague => "Covering for a colleague",
            BreakGlassReason::ContinuityOfCare => "Continuity of care",
            BreakGlassReason::Other => "Other",
        }
    }
}

/// Longest break-glass reason text, in characters.
pub const BREAK_GLASS_TEXT_MAX: usize = 500;
/// How long a break-glass grant lasts.
pub const BREAK_GLASS_MINUTES: i64 = 60;

/// A clinician's request to read a chart outside their care team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassRequest {
    pub reason_code: BreakGlassReason,
    /// The clinician's own words (required, at most 500 characters). It may mention
    /// clinical facts, so it is handled as PHI.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason_text: Phi<String>,
}

/// Temporary access to one patient's chart for one clinician.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassGrant {
    pub grant_id: Uuid,
    pub patient_id: Uuid,
    pub reason_code: BreakGlassReason,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub reason_text: Phi<String>,
    pub granted_at_ms: i64,
    pub expires_at_ms: i64,
}

/// One break-glass grant as an admin reviews it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassReview {
    pub grant: BreakGlassGrant,
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    /// Audit events the clinic holds for this user and patient while the grant lasted.
    pub events_during: u64,
    /// The review that completed it (the last of `reviews_required`); absent while the
    /// grant waits for review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<ReviewNote>,
    /// How many different admins must review it (the clinic's policy when it was opened).
    #[serde(default = "one_review")]
    pub reviews_required: u8,
    /// Every review so far, oldest first.
    #[serde(default)]
    pub reviews: Vec<ReviewNote>,
    /// Still pending, and the clinic has fewer admins who may review it (active, not the
    /// grantee, not one who created or changed the grantee's account in the 30 days before
    /// the grant, not one who reviewed it already) than reviews it still needs.
    #[serde(default)]
    pub short_of_reviewers: bool,
}

fn one_review() -> u8 {
    1
}

/// How long before a grant an admin's change to the grantee's account (creating it,
/// changing its role, deactivating it, resetting its second factors) bars them from
/// reviewing it.
pub const REVIEWER_COOLING_OFF_DAYS: i64 = 30;

/// An admin's acknowledgement of a break-glass grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewNote {
    pub reviewed_by: Uuid,
    pub reviewed_at_ms: i64,
    /// Free text about a patient's chart access: treated as PHI (redacted in Debug).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub note: Phi<String>,
}

/// The clinic's break-glass grants, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakGlassQueue {
    pub grants: Vec<BreakGlassReview>,
}

/// An admin's note acknowledging a grant (required, at most 1000 characters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub note: Phi<String>,
}

/// Longest review note, in characters.
pub const REVIEW_NOTE_MAX: usize = 1000;
