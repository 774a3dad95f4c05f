//! Break-glass grants (the `break_glass_grants` table): a clinician's hour of access to one
//! chart outside their care team, and the admins' reviews of it (`break_glass_reviews`, one
//! row per admin; the grant takes the review that completed it). Clinic data: every
//! function runs in the caller's [`ClinicTx`].

use std::collections::HashMap;

use clinicdesk_protocol::audit::{AuditAction, AuditEvent};
use clinicdesk_protocol::wire::{BreakGlassGrant, BreakGlassReason, BreakGlassReview, ReviewNote};

use super::*;

/// A grant as its review needs it.
pub struct GrantStanding {
    pub patient_id: Uuid,
    /// The clinician it was granted to.
    pub grantee: Uuid,
    pub granted_at_ms: i64,
    pub reviews_required: u8,
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
             (id, clinic_id, user_id, patient_id, reason_code, reason_text, granted_at_ms,
              expires_at_ms, reviews_required)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                 (SELECT break_glass_reviewers FROM clinics WHERE id = $2))",
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
                g.reviewed_by, g.reviewed_at_ms, g.review_note, g.reviews_required
         FROM break_glass_grants g JOIN users u ON u.id = g.user_id AND u.clinic_id = g.clinic_id
         WHERE g.clinic_id = $1 AND ($2 = 0 OR g.reviewed_at_ms IS NULL)
         ORDER BY g.granted_at_ms DESC, g.id DESC LIMIT $3",
    )
    .bind(&clinic)
    .bind(i64::from(pending_only))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let mut reviews = reviews_of(tx, rows.iter().map(|r| r.get::<&str, _>(0))).await?;
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
                reviews_required: required(row.get(13)),
                reviews: reviews.remove(row.get::<&str, _>(0)).unwrap_or_default(),
                short_of_reviewers: false,
            })
        })
        .collect()
}

/// The reviews of the grants with these ids, oldest first, by grant id.
async fn reviews_of<'a>(
    tx: &mut ClinicTx,
    grant_ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Vec<ReviewNote>>, ServerError> {
    let mut by_grant: HashMap<String, Vec<ReviewNote>> = HashMap::new();
    let ids: Vec<&str> = grant_ids.collect();
    // Bounded statements: the queue lists at most a few hundred grants.
    for chunk in ids.chunks(200) {
        let mut q = super::sql::Statement::new(
            "SELECT grant_id, reviewer_id, reviewed_at_ms, note FROM break_glass_reviews
             WHERE clinic_id = ",
        );
        q.bind(tx.clinic_id().to_string())
            .push(" AND grant_id IN (");
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(*id);
        }
        q.push(") ORDER BY reviewed_at_ms, reviewer_id");
        for row in q.query().fetch_all(&mut **tx).await? {
            by_grant
                .entry(row.get::<String, _>(0))
                .or_default()
                .push(ReviewNote {
                    reviewed_by: parse_uuid(row.get(1))?,
                    reviewed_at_ms: row.get(2),
                    note: Phi::new(row.get(3)),
                });
        }
    }
    Ok(by_grant)
}

fn required(stored: i64) -> u8 {
    u8::try_from(stored).unwrap_or(1).max(1)
}

/// The grant as its review needs it; `None` if the clinic has no such grant.
pub async fn grant_standing(
    tx: &mut ClinicTx,
    grant_id: Uuid,
) -> Result<Option<GrantStanding>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let found = sqlx::query(
        "SELECT patient_id, reviewed_at_ms, user_id, granted_at_ms, reviews_required
         FROM break_glass_grants WHERE id = $1 AND clinic_id = $2",
    )
    .bind(grant_id.to_string())
    .bind(clinic)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = found else { return Ok(None) };
    Ok(Some(GrantStanding {
        patient_id: parse_uuid(row.get(0))?,
        reviewed: row.get::<Option<i64>, _>(1).is_some(),
        grantee: parse_uuid(row.get(2))?,
        granted_at_ms: row.get(3),
        reviews_required: required(row.get(4)),
    }))
}

/// Takes the grant's row lock before its reviews are counted, so two admins reviewing at
/// once are counted one after the other (on PostgreSQL each would otherwise miss the
/// other's review and neither complete the grant). A no-op on the row's data.
pub async fn lock_grant(tx: &mut ClinicTx, grant_id: Uuid) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "UPDATE break_glass_grants SET reviewed_at_ms = reviewed_at_ms
         WHERE id = $1 AND clinic_id = $2 AND reviewed_at_ms IS NULL",
    )
    .bind(grant_id.to_string())
    .bind(clinic)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The grant's reviews so far, oldest first.
pub async fn grant_reviews(
    tx: &mut ClinicTx,
    grant_id: Uuid,
) -> Result<Vec<ReviewNote>, ServerError> {
    let id = grant_id.to_string();
    let mut all = reviews_of(tx, std::iter::once(id.as_str())).await?;
    Ok(all.remove(&id).unwrap_or_default())
}

/// Stores one admin's review of a grant.
pub async fn insert_review(
    tx: &mut ClinicTx,
    grant_id: Uuid,
    review: &ReviewNote,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO break_glass_reviews (grant_id, clinic_id, reviewer_id, reviewed_at_ms, note)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(grant_id.to_string())
    .bind(clinic)
    .bind(review.reviewed_by.to_string())
    .bind(review.reviewed_at_ms)
    .bind(review.note.expose().as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The clinic's active admins.
pub async fn active_admins(tx: &mut ClinicTx) -> Result<Vec<Uuid>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM users WHERE clinic_id = $1 AND role = $2 AND active = 1 ORDER BY id",
    )
    .bind(clinic)
    .bind(Role::Admin.as_str())
    .fetch_all(&mut **tx)
    .await?;
    ids.iter().map(|id| parse_uuid(id)).collect()
}

/// One admin's change to one account, as the clinic's trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountChange {
    pub by: Uuid,
    pub account: Uuid,
    pub at_ms: i64,
}

/// Every change to an account since `since_ms`: created, given another role, deactivated,
/// or stripped of its second factors.
pub async fn account_changes_since(
    tx: &mut ClinicTx,
    since_ms: i64,
) -> Result<Vec<AccountChange>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT event_json FROM audit_events
         WHERE clinic_id = $1 AND action IN ($2, $3, $4, $5) AND occurred_at_ms >= $6",
    )
    .bind(clinic)
    .bind(AuditAction::UserCreated.as_str())
    .bind(AuditAction::RoleChanged.as_str())
    .bind(AuditAction::UserDeactivated.as_str())
    .bind(AuditAction::MfaReset.as_str())
    .bind(since_ms)
    .fetch_all(&mut **tx)
    .await?;
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let event: AuditEvent = serde_json::from_str(row.get::<&str, _>(0))
            .map_err(|_| ServerError::Internal("stored event malformed"))?;
        if let Ok(account) = Uuid::parse_str(&event.resource_id) {
            changes.push(AccountChange {
                by: event.actor_user_id,
                account,
                at_ms: event.occurred_at_ms,
            });
        }
    }
    Ok(changes)
}

/// Marks a grant reviewed by the review that completed it; false if it already was (or the
/// clinic has no such grant).
pub async fn complete(
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
