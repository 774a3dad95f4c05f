//! The access review: every user of a clinic whose role reaches patient data, with what a
//! reviewer checks each quarter (is this person still here, in this role, with a second
//! factor, on which workstations, when did they last sign in). CSV for a spreadsheet. The
//! operator's console may ask for every user, admins too (their second factors guard the
//! accounts that manage all the others): the compliance evidence does.

use clinicdesk_protocol::policy::{self, Permission};

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::{Store, audit_query};
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

/// Whose rows the review holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reviewed {
    /// Users whose role reaches patient data (the quarterly review).
    PhiAccess,
    /// Every user of the clinic (`phi_access` then reads `none` for those without).
    EveryUser,
}

/// One CSV row per user reviewed, by role then username; users deactivated stay listed
/// (the review confirms they are).
pub async fn rows(
    store: &Store,
    scope: &ClinicScope,
    reviewed: Reviewed,
) -> Result<Vec<[String; 9]>, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    let users = audit_query::reviewed_users(&mut tx).await?;
    let stations = audit_query::workstations_used(&mut tx).await?;
    tx.commit().await?;
    let mut out = Vec::new();
    for u in users {
        let role = u.role;
        let access: Vec<&str> = PHI
            .iter()
            .filter(|(p, _)| policy::allows(role, *p))
            .map(|(_, name)| *name)
            .collect();
        if access.is_empty() && reviewed == Reviewed::PhiAccess {
            continue;
        }
        let mut factors = Vec::new();
        if u.totp {
            factors.push("totp");
        }
        if u.webauthn {
            factors.push("webauthn");
        }
        let used: Vec<&str> = stations
            .iter()
            .filter(|(user, _)| *user == u.id)
            .map(|(_, name)| name.as_str())
            .collect();
        out.push([
            u.username,
            u.display_name,
            role.as_str().to_owned(),
            if access.is_empty() {
                "none".to_owned()
            } else {
                access.join(";")
            },
            if u.active { "active" } else { "deactivated" }.to_owned(),
            if factors.is_empty() {
                "none".to_owned()
            } else {
                factors.join(";")
            },
            used.join(";"),
            u.last_sign_in_ms
                .map(rfc3339)
                .transpose()?
                .unwrap_or_default(),
            u.id,
        ]);
    }
    Ok(out)
}

/// The review as CSV (header first; cells that a spreadsheet would run as formulas are
/// defused as in the audit export).
pub async fn csv(
    store: &Store,
    scope: &ClinicScope,
    reviewed: Reviewed,
) -> Result<Vec<u8>, ServerError> {
    let mut out = crate::audit::export::csv_row(&HEADER)?;
    for row in rows(store, scope, reviewed).await? {
        out.extend(crate::audit::export::csv_row(&row)?);
    }
    Ok(out)
}
