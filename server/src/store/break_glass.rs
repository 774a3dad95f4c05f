//! Break-glass grants (the `break_glass_grants` table): a clinician's hour of access to one
//! chart outside their care team, and an admin's review of it. Clinic data: every function
//! runs in the caller's [`ClinicTx`].

use clinicdesk_protocol::wire::{BreakGlassGrant, BreakGlassReason, BreakGlassReview, ReviewNote};

use super::*;

/// Whether a grant was reviewed, and whose chart it opened.
pub struct GrantStanding {
    pub patient_id: Uuid,
    pub reviewed: bool,
}

/// The user's live grant on the patient's chart at `now_ms`: the one that lasts longest,
/// if several are live.
pub async fn live_grant(
    tx: &mut ClinicTx,
    user_id: Uuid,
    patient_id: Uuid,
    now_ms: i64,
) -> Result<Option<BreakGlassGrant>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let grant = sqlx::query(
        "SELECT id, patient_id, reason_code, reason_text, granted_at_ms, expires_at_ms
         FROM break_glass_grants
         WHERE clinic_id = $1 AND user_id = $2 AND patient_id = $3 AND expires_at_ms > $4
         ORDER BY expires_at_ms DESC LIMIT 1",
    )
    .bind(clinic)
    .bind(user_id.to_string())
    .bind(patient_id.to_string())
    .bind(now_ms)
    .fetch_optional(&mut **tx)
    .await?;
    grant.map(|row| grant_of(&row, 0)).transpose()
}

/// Stores `grant`, opened by `user_id`.
pub async fn insert_grant(
    tx: &mut ClinicTx,
    user_id: Uuid,
    grant: &BreakGlassGrant,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO break_glass_grants
             (id, clinic_id, user_id, patient_id, reason_code, reason_text, granted_at_ms, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(grant.grant_id.to_string())
    .bind(clinic)
    .bind(user_id.to_string())
    .bind(grant.patient_id.to_string())
    .bind(grant.reason_code.as_str())
    .bind(grant.reason_text.expose())
    .bind(grant.granted_at_ms)
    .bind(grant.expires_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The clinic's grants (only those not yet reviewed if `pending_only`), newest first, at
/// most `limit`, each with its user, the events its user recorded on the patient while it
/// was live, and its review.
pub async fn grants(
    tx: &mut ClinicTx,
    pending_only: bool,
    limit: i64,
) -> Result<Vec<BreakGlassReview>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT g.id, g.patient_id, g.reason_code, g.reason_text, g.granted_at_ms,
                g.expires_at_ms, g.user_id, u.username, u.display_name,
                (SELECT count(*) FROM audit_events e
                  WHERE e.clinic_id = g.clinic_id AND e.patient_id = g.patient_id
                    AND e.actor_user_id = g.user_id
                    AND e.occurred_at_ms >= g.granted_at_ms
                    AND e.occurred_at_ms < g.expires_at_ms),
                g.reviewed_by, g.reviewed_at_ms, g.review_note
         FROM break_glass_grants g JOIN users u ON u.id = g.user_id AND u.clinic_id = g.clinic_id
         WHERE g.clinic_id = $1 AND ($2 = 0 OR g.reviewed_at_ms IS NULL)
         ORDER BY g.granted_at_ms DESC, g.id DESC LIMIT $3",
    )
    .bind(clinic)
    .bind(i64::from(pending_only))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| {
            let reviewed = match row.get::<Option<String>, _>(10) {
                Some(by) => Some(ReviewNote {
                    reviewed_by: parse_uuid(&by)?,
                    reviewed_at_ms: row.get::<Option<i64>, _>(11).unwrap_or_default(),
                    note: Phi::new(row.get::<Option<String>, _>(12).unwrap_or_default()),
                }),
                None => None,
            };
            Ok(BreakGlassReview {
                grant: grant_of(row, 0)?,
                user_id: parse_uuid(row.get(6))?,
                username: row.get(7),
                display_name: row.get(8),
                events_during: u64::try_from(row.get::<i64, _>(9)).unwrap_or_default(),
                reviewed,
            })
        })
        .collect()
}

/// Whose chart the grant opened and whether it was reviewed; `None` if the clinic has no
/// such grant.
pub async fn grant_standing(
    tx: &mut ClinicTx,
    grant_id: Uuid,
) -> Result<Option<GrantStanding>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let found = sqlx::query(
        "SELECT patient_id, reviewed_at_ms FROM break_glass_grants WHERE id = $1 AND clinic_id = $2",
    )
    .bind(grant_id.to_string())
    .bind(clinic)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = found else { return Ok(None) };
    Ok(Some(GrantStanding {
        patient_id: parse_uuid(row.get(0))?,
        reviewed: row.get::<Option<i64>, _>(1).is_some(),
    }))
}

/// Stores `reviewed_by`'s review of a grant not yet reviewed; false if it was (another
/// admin's review won a race) or the clinic has no such grant.
pub async fn review(
    tx: &mut ClinicTx,
    grant_id: Uuid,
    reviewed_by: Uuid,
    reviewed_at_ms: i64,
    note: &str,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let done = sqlx::query(
        "UPDATE break_glass_grants SET reviewed_by = $1, reviewed_at_ms = $2, review_note = $3
         WHERE id = $4 AND clinic_id = $5 AND reviewed_at_ms IS NULL",
    )
    .bind(reviewed_by.to_string())
    .bind(reviewed_at_ms)
    .bind(note)
    .bind(grant_id.to_string())
    .bind(clinic)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A grant from `id, patient_id, reason_code, reason_text, granted_at_ms, expires_at_ms`
/// starting at column `at`.
fn grant_of(row: &AnyRow, at: usize) -> Result<BreakGlassGrant, ServerError> {
    Ok(BreakGlassGrant {
        grant_id: parse_uuid(row.get(at))?,
        patient_id: parse_uuid(row.get(at + 1))?,
        reason_code: BreakGlassReason::parse(row.get(at + 2))
            .ok_or(ServerError::Internal("stored reason code unknown"))?,
        reason_text: Phi::new(row.get(at + 3)),
        granted_at_ms: row.get(at + 4),
        expires_at_ms: row.get(at + 5),
    })
}
