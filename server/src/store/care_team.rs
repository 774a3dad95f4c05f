//! Care teams (the `care_team` table): which clinicians read which patients' clinical
//! summaries. Clinic data: every function runs in the caller's [`ClinicTx`].

use clinicdesk_protocol::wire::StaffMember;

use super::*;

/// An active clinician of the clinic, and whether they are on the patient's team.
pub struct TeamCandidate {
    pub member: StaffMember,
    pub on_team: bool,
}

/// Whether the clinician is on the patient's team.
pub async fn on_team(
    tx: &mut ClinicTx,
    clinician_id: Uuid,
    patient_id: Uuid,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let on_team: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM care_team WHERE clinic_id = $1 AND clinician_id = $2 AND patient_id = $3",
    )
    .bind(clinic)
    .bind(clinician_id.to_string())
    .bind(patient_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(on_team.is_some())
}

/// The clinic's active clinicians by name, each with whether they are on the patient's team.
pub async fn candidates(
    tx: &mut ClinicTx,
    patient_id: Uuid,
) -> Result<Vec<TeamCandidate>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT u.id, u.display_name,
                EXISTS (SELECT 1 FROM care_team t WHERE t.clinic_id = u.clinic_id
                        AND t.clinician_id = u.id AND t.patient_id = $2)
         FROM users u WHERE u.clinic_id = $1 AND u.role = $3 AND u.active = 1
         ORDER BY u.display_name, u.id",
    )
    .bind(clinic)
    .bind(patient_id.to_string())
    .bind(Role::Clinician.as_str())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(TeamCandidate {
                member: StaffMember {
                    user_id: parse_uuid(row.get(0))?,
                    display_name: row.get(1),
                },
                on_team: flag(row, 2)?,
            })
        })
        .collect()
}

/// Whether the user is an active clinician of the clinic (who may be on a team).
pub async fn is_active_clinician(tx: &mut ClinicTx, user_id: Uuid) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let clinician: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM users WHERE id = $1 AND clinic_id = $2 AND role = $3 AND active = 1",
    )
    .bind(user_id.to_string())
    .bind(clinic)
    .bind(Role::Clinician.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(clinician.is_some())
}

/// Puts the clinician on the patient's team; answers whether they were not on it yet.
pub async fn add_member(
    tx: &mut ClinicTx,
    clinician_id: Uuid,
    patient_id: Uuid,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let added = sqlx::query(
        "INSERT INTO care_team (clinic_id, clinician_id, patient_id) VALUES ($1, $2, $3)
         ON CONFLICT (clinician_id, patient_id) DO NOTHING",
    )
    .bind(clinic)
    .bind(clinician_id.to_string())
    .bind(patient_id.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(added > 0)
}

/// Takes the clinician off the patient's team; answers whether they were on it.
pub async fn remove_member(
    tx: &mut ClinicTx,
    clinician_id: Uuid,
    patient_id: Uuid,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let removed = sqlx::query(
        "DELETE FROM care_team WHERE clinic_id = $1 AND clinician_id = $2 AND patient_id = $3",
    )
    .bind(clinic)
    .bind(clinician_id.to_string())
    .bind(patient_id.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(removed > 0)
}

/// The clinic's active clinicians by name: who can be booked.
pub async fn active_clinicians(tx: &mut ClinicTx) -> Result<Vec<StaffMember>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT id, display_name FROM users
         WHERE clinic_id = $1 AND role = $2 AND active = 1 ORDER BY display_name, id",
    )
    .bind(clinic)
    .bind(Role::Clinician.as_str())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StaffMember {
                user_id: parse_uuid(row.get(0))?,
                display_name: row.get(1),
            })
        })
        .collect()
}
