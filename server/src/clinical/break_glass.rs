//! Care teams and break-glass (HIPAA emergency access). A clinician reads the clinical
//! summary of the patients on their care team. For any other patient of the clinic they may
//! break the glass: with a reason code and their own words they get an hour's access to
//! that one chart, every read under it is flagged in the audit trail, and the grant waits in
//! a queue until an admin acknowledges it with a note (itself audited).
//!
//! Everything here goes through the caller's [`ClinicScope`]: another clinic's patient or
//! grant is not found, exactly as one that does not exist.

use clinicdesk_protocol::audit::{AuditAction, BreakGlass, Outcome, RequestSeen};
use clinicdesk_protocol::phi::Phi;
use clinicdesk_protocol::policy::{self, Permission};
use clinicdesk_protocol::wire::{
    BREAK_GLASS_MINUTES, BREAK_GLASS_TEXT_MAX, BreakGlassGrant, BreakGlassReason,
    BreakGlassRequest, BreakGlassReview, ClinicalAccess, REVIEW_NOTE_MAX, ReviewNote, UserInfo,
};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::server_chain::{self, ServerEvent, security_event};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::{Store, parse_uuid};

/// The route template recorded on a grant's event.
pub const GRANT_ROUTE: &str = "/v1/patients/{patient_id}/break-glass";
/// The route template recorded on a review's event.
pub const REVIEW_ROUTE: &str = "/v1/break-glass/{grant_id}/review";
/// Most grants one queue answer lists.
const QUEUE_LIMIT: i64 = 500;

/// What a user may read of a patient's chart now. Reading under break-glass always names
/// its grant.
#[derive(Debug)]
pub enum ChartAccess {
    /// The role reads no clinical content.
    NotPermitted,
    /// A clinical role, but the patient is not on the user's care team.
    OutsideCareTeam,
    CareTeam,
    BreakGlass(BreakGlassGrant),
}

impl ChartAccess {
    /// Whether the clinical part of the chart is served.
    pub fn reads_clinical(&self) -> bool {
        matches!(self, Self::CareTeam | Self::BreakGlass(_))
    }

    /// What the chart's answer says about it.
    pub fn wire(&self) -> ClinicalAccess {
        match self {
            Self::NotPermitted => ClinicalAccess::NotPermitted,
            Self::OutsideCareTeam => ClinicalAccess::OutsideCareTeam,
            Self::CareTeam => ClinicalAccess::CareTeam,
            Self::BreakGlass(_) => ClinicalAccess::BreakGlass,
        }
    }

    pub fn into_grant(self) -> Option<BreakGlassGrant> {
        match self {
            Self::BreakGlass(grant) => Some(grant),
            _ => None,
        }
    }
}

/// What `user` may read of `patient_id`'s chart now.
pub async fn clinical_access(
    store: &Store,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
    now_ms: i64,
) -> Result<ChartAccess, ServerError> {
    if !policy::allows(user.role, Permission::ReadClinical) {
        return Ok(ChartAccess::NotPermitted);
    }
    let mut tx = store.clinic_tx(scope).await?;
    let on_team: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM care_team WHERE clinic_id = $1 AND clinician_id = $2 AND patient_id = $3",
    )
    .bind(scope.clinic_id().to_string())
    .bind(user.user_id.to_string())
    .bind(patient_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    if on_team.is_some() {
        tx.commit().await?;
        return Ok(ChartAccess::CareTeam);
    }
    // The grant that lasts longest, if several are live.
    let grant = sqlx::query(
        "SELECT id, patient_id, reason_code, reason_text, granted_at_ms, expires_at_ms
         FROM break_glass_grants
         WHERE clinic_id = $1 AND user_id = $2 AND patient_id = $3 AND expires_at_ms > $4
         ORDER BY expires_at_ms DESC LIMIT 1",
    )
    .bind(scope.clinic_id().to_string())
    .bind(user.user_id.to_string())
    .bind(patient_id.to_string())
    .bind(now_ms)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    match grant {
        Some(row) => Ok(ChartAccess::BreakGlass(grant_of(&row, 0)?)),
        None => Ok(ChartAccess::OutsideCareTeam),
    }
}

/// The flag every event read under `grant` carries.
pub fn flag(grant: &BreakGlassGrant) -> BreakGlass {
    BreakGlass {
        reason_code: grant.reason_code.as_str().to_owned(),
        reason_text: grant.reason_text.expose().clone(),
    }
}

fn validate_text(text: &str, max: usize, field: &'static str) -> Result<(), ServerError> {
    if text.trim().is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(ServerError::BadRequest { field });
    }
    Ok(())
}

/// Opens a grant for the caller on one of the clinic's patients and records the
/// `break_glass` event in the same transaction.
pub async fn open(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
    request: BreakGlassRequest,
    seen: RequestSeen,
) -> Result<BreakGlassGrant, ServerError> {
    // Line breaks are allowed in the clinician's words, other control characters are not.
    let text = request.reason_text.expose().replace(['\r', '\n'], " ");
    validate_text(&text, BREAK_GLASS_TEXT_MAX, "reason_text")?;
    let now = state.clock.now_ms();
    let grant = BreakGlassGrant {
        grant_id: Uuid::now_v7(),
        patient_id,
        reason_code: request.reason_code,
        reason_text: Phi::new(text.trim().to_owned()),
        granted_at_ms: now,
        expires_at_ms: now + BREAK_GLASS_MINUTES * 60_000,
    };
    let mut tx = state.store.clinic_tx(scope).await?;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM patients WHERE id = $1 AND clinic_id = $2")
            .bind(patient_id.to_string())
            .bind(scope.clinic_id().to_string())
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Err(ServerError::NotFound);
    }
    sqlx::query(
        "INSERT INTO break_glass_grants
             (id, clinic_id, user_id, patient_id, reason_code, reason_text, granted_at_ms, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(grant.grant_id.to_string())
    .bind(scope.clinic_id().to_string())
    .bind(user.user_id.to_string())
    .bind(patient_id.to_string())
    .bind(grant.reason_code.as_str())
    .bind(grant.reason_text.expose())
    .bind(grant.granted_at_ms)
    .bind(grant.expires_at_ms)
    .execute(&mut *tx)
    .await?;
    let event = ServerEvent {
        actor_user_id: user.user_id,
        actor_role: user.role,
        action: AuditAction::BreakGlass,
        resource_type: "Patient".to_owned(),
        resource_id: patient_id.to_string(),
        patient_id: Some(patient_id),
        fields: Vec::new(),
        outcome: Outcome::Success,
        route: GRANT_ROUTE.to_owned(),
        break_glass: Some(flag(&grant)),
        request: seen,
    };
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    tracing::warn!(grant_id = %grant.grant_id, user_id = %user.user_id, "break-glass access granted");
    Ok(grant)
}

/// Which grants the queue lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFilter {
    Pending,
    All,
}

/// The clinic's grants, newest first (at most 500).
pub async fn queue(
    store: &Store,
    scope: &ClinicScope,
    filter: QueueFilter,
) -> Result<Vec<BreakGlassReview>, ServerError> {
    let pending_only = i64::from(filter == QueueFilter::Pending);
    let mut tx = store.clinic_tx(scope).await?;
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
    .bind(scope.clinic_id().to_string())
    .bind(pending_only)
    .bind(QUEUE_LIMIT)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
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

/// Acknowledges a grant with the admin's note and records `break_glass_reviewed`, in one
/// transaction. A grant is reviewed once: a second review is a conflict.
pub async fn review(
    state: &AppState,
    scope: &ClinicScope,
    admin: &UserInfo,
    grant_id: Uuid,
    note: &Phi<String>,
    seen: RequestSeen,
) -> Result<(), ServerError> {
    let note = note.expose().replace(['\r', '\n'], " ");
    validate_text(&note, REVIEW_NOTE_MAX, "note")?;
    let mut tx = state.store.clinic_tx(scope).await?;
    let found = sqlx::query(
        "SELECT patient_id, reviewed_at_ms FROM break_glass_grants WHERE id = $1 AND clinic_id = $2",
    )
    .bind(grant_id.to_string())
    .bind(scope.clinic_id().to_string())
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ServerError::NotFound)?;
    if found.get::<Option<i64>, _>(1).is_some() {
        return Err(ServerError::Conflict { field: "grant_id" });
    }
    let patient_id = parse_uuid(found.get(0))?;
    let done = sqlx::query(
        "UPDATE break_glass_grants SET reviewed_by = $1, reviewed_at_ms = $2, review_note = $3
         WHERE id = $4 AND clinic_id = $5 AND reviewed_at_ms IS NULL",
    )
    .bind(admin.user_id.to_string())
    .bind(state.clock.now_ms())
    .bind(note.trim())
    .bind(grant_id.to_string())
    .bind(scope.clinic_id().to_string())
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        // Another admin's review won the race.
        return Err(ServerError::Conflict { field: "grant_id" });
    }
    let mut event = security_event(
        admin,
        AuditAction::BreakGlassReviewed,
        "BreakGlassGrant",
        grant_id.to_string(),
        REVIEW_ROUTE,
        seen,
    );
    event.patient_id = Some(patient_id);
    event.fields = vec!["note".to_owned()];
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    tracing::info!(%grant_id, by = %admin.user_id, "break-glass grant reviewed");
    Ok(())
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
