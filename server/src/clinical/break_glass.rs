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
    BREAK_GLASS_MINUTES, BREAK_GLASS_TEXT_MAX, BreakGlassGrant, BreakGlassRequest,
    BreakGlassReview, ClinicalAccess, REVIEW_NOTE_MAX, UserInfo,
};
use uuid::Uuid;

use crate::audit::server_chain::{self, ServerEvent, security_event};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::{self, ClinicTx, Store};

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

/// What `user` may read of `patient_id`'s chart now, in the caller's transaction.
pub async fn clinical_access(
    tx: &mut ClinicTx,
    user: &UserInfo,
    patient_id: Uuid,
    now_ms: i64,
) -> Result<ChartAccess, ServerError> {
    if !policy::allows(user.role, Permission::ReadClinical) {
        return Ok(ChartAccess::NotPermitted);
    }
    if store::care_team::on_team(tx, user.user_id, patient_id).await? {
        return Ok(ChartAccess::CareTeam);
    }
    match store::break_glass::live_grant(tx, user.user_id, patient_id, now_ms).await? {
        Some(grant) => Ok(ChartAccess::BreakGlass(grant)),
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
    if !store::patients::patient_exists(&mut tx, patient_id).await? {
        return Err(ServerError::NotFound);
    }
    store::break_glass::insert_grant(&mut tx, user.user_id, &grant).await?;
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
        change: None,
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
    let mut tx = store.clinic_tx(scope).await?;
    let grants =
        store::break_glass::grants(&mut tx, filter == QueueFilter::Pending, QUEUE_LIMIT).await?;
    tx.commit().await?;
    Ok(grants)
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
    let found = store::break_glass::grant_standing(&mut tx, grant_id)
        .await?
        .ok_or(ServerError::NotFound)?;
    if found.reviewed {
        return Err(ServerError::Conflict { field: "grant_id" });
    }
    let patient_id = found.patient_id;
    let reviewed_at_ms = state.clock.now_ms();
    if !store::break_glass::review(
        &mut tx,
        grant_id,
        admin.user_id,
        reviewed_at_ms,
        note.trim(),
    )
    .await?
    {
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
