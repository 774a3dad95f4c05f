//! `/v1/clinics`: the operator provisions a clinic with its first admin.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secret::Secret;

/// The operator's request for a new clinic with its first admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewClinic {
    /// Chosen by the caller, 8 to 64 letters, digits, `-` or `_`: a retry with the same key
    /// and body answers for the same clinic (with fresh one-time codes while its admin has
    /// not signed in); the same key with another body is a conflict.
    pub idempotency_key: String,
    pub clinic_name: String,
    pub admin_username: String,
    pub admin_display_name: String,
    /// The clinic's IANA time zone, e.g. `America/Chicago` (UTC when absent): its days,
    /// and the times on its schedule, are in it. Its admin can change it later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// `GET /v1/clinic`: the caller's clinic as every workstation needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicSettings {
    pub clinic_id: Uuid,
    pub name: String,
    /// IANA name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Today's date in the clinic's time zone, `YYYY-MM-DD`.
    pub today: String,
    /// How many different admins review each break-glass grant opened from now on: 1 or 2
    /// (the default: one admin alone cannot open and close a grant's review).
    #[serde(default = "two_reviewers")]
    pub break_glass_reviewers: u8,
}

fn two_reviewers() -> u8 {
    2
}

/// `POST /v1/clinic/break-glass-reviewers`: the admin sets how many different admins review
/// each break-glass grant opened from now on (1 or 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReviewersChange {
    pub reviewers: u8,
}

/// `POST /v1/clinic/time-zone`: the admin moves the clinic's days to another time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TimeZoneChange {
    pub time_zone: String,
}

/// A provisioned clinic: what its first admin needs to start, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicProvisioned {
    pub clinic_id: Uuid,
    pub clinic_name: String,
    pub admin_user_id: Uuid,
    pub admin_username: String,
    /// The admin's one-time first password: it signs in once, to choose their own password
    /// and set up a second factor, until it expires.
    pub first_password: Secret,
    /// RFC 3339, UTC.
    pub first_password_expires_at: String,
    /// Enrolls the clinic's first workstation.
    pub enrollment_code: Secret,
    /// RFC 3339, UTC.
    pub enrollment_code_expires_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_provisioned_clinic_hides_its_codes() {
        let done = ClinicProvisioned {
            clinic_id: Uuid::nil(),
            clinic_name: "Harbour Clinic".into(),
            admin_user_id: Uuid::nil(),
            admin_username: "admin".into(),
            first_password: "CANARY-first".into(),
            first_password_expires_at: "2026-01-01T00:00:00Z".into(),
            enrollment_code: "CANARY-code".into(),
            enrollment_code_expires_at: "2026-01-01T00:00:00Z".into(),
        };
        let printed = format!("{done:?}");
        assert!(!printed.contains("CANARY"), "{printed}");
        assert_eq!(
            serde_json::to_value(&done).unwrap()["first_password"],
            "CANARY-first"
        );
    }
}
