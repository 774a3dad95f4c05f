//! The access review: every user of a clinic whose role reaches patient data, with what a
//! reviewer checks each quarter (is this person still here, in this role, with a second
//! factor, on which workstations, when did they last sign in). CSV for a spreadsheet.

use clinicdesk_protocol::policy::{self, Permission};
use sqlx::Row;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::{Store, flag, parse_role};
use crate::time::rfc3339;

/// The permissions that reach patient data, as the review names them.
const PHI: [(Permission, &str); 3] = [
    (Permission::ReadSchedule, "schedule"),
    (Permission::ReadDemographics, "demographics"),
    (Permission::ReadClinical, "clinical"),
];

pub const HEADER: [&str; 9] = [
    "username",
    "display_name",
    "role",
    "phi_access",
    "status",
    "second_factors",
    "workstations",
    "last_sign_in_utc",
    "user_id",
];

/// One CSV row per user with PHI access, by role then username; users deactivated stay
/// listed (the review confirms they are).
pub async fn rows(store: &Store, scope: &ClinicScope) -> Result<Vec<[String; 9]>, ServerError> {
    let users = sqlx::query(
        "SELECT u.id, u.username, u.display_name, u.role, u.active,
                EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id),
                EXISTS (SELECT 1 FROM mfa_webauthn w WHERE w.user_id = u.id),
                (SELECT max(s.created_at_ms) FROM sessions s WHERE s.user_id = u.id)
         FROM users u WHERE u.clinic_id = $1 ORDER BY u.role, u.username",
    )
    .bind(scope.clinic_id().to_string())
    .fetch_all(store.pool())
    .await?;
    let stations = sqlx::query(
        "SELECT DISTINCT s.user_id, d.name FROM sessions s
         JOIN devices d ON d.id = s.device_id AND d.clinic_id = s.clinic_id
         WHERE s.clinic_id = $1 ORDER BY d.name",
    )
    .bind(scope.clinic_id().to_string())
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::new();
    for u in &users {
        let role = parse_role(u.get(3))?;
        let access: Vec<&str> = PHI
            .iter()
            .filter(|(p, _)| policy::allows(role, *p))
            .map(|(_, name)| *name)
            .collect();
        if access.is_empty() {
            continue;
        }
        let id: String = u.get(0);
        let mut factors = Vec::new();
        if flag(u, 5)? {
            factors.push("totp");
        }
        if flag(u, 6)? {
            factors.push("webauthn");
        }
        let used: Vec<String> = stations
            .iter()
            .filter(|s| s.get::<&str, _>(0) == id)
            .map(|s| s.get::<String, _>(1))
            .collect();
        let last: Option<i64> = u.get(7);
        out.push([
            u.get(1),
            u.get(2),
            role.as_str().to_owned(),
            access.join(";"),
            if flag(u, 4)? { "active" } else { "deactivated" }.to_owned(),
            if factors.is_empty() {
                "none".to_owned()
            } else {
                factors.join(";")
            },
            used.join(";"),
            last.map(rfc3339).transpose()?.unwrap_or_default(),
            id,
        ]);
    }
    Ok(out)
}

/// The review as CSV (header first; cells that a spreadsheet would run as formulas are
/// defused as in the audit export).
pub async fn csv(store: &Store, scope: &ClinicScope) -> Result<Vec<u8>, ServerError> {
    let mut out = crate::audit::export::csv_row(&HEADER)?;
    for row in rows(store, scope).await? {
        out.extend(crate::audit::export::csv_row(&row)?);
    }
    Ok(out)
}
