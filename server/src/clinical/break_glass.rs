//! Care teams and break-glass (HIPAA emergency access). A clinician reads the clinical
//! summary of the patients on their care team. For any other patient of the clinic they may
//! break the glass: with a reason code and their own words they get an hour's access to
//! that one chart, every read under it is flagged in the audit trail, and the grant waits in
//! a queue until admins acknowledge it with a note each (each audited): two different
//! admins by default (the clinic's policy, 1 or 2), neither the grantee nor one who created
//! or changed the grantee's account in the 30 days before the grant.
//!
//! Everything here goes through the caller's [`ClinicScope`]: another clinic's patient or
//! grant is not found, exactly as one that does not exist.

use clinicdesk_protocol::audit::{AuditAction, BreakGlass, Outcome, RequestSeen};
use clinicdesk_protocol::phi::Phi;
use clinicdesk_protocol::policy::{self, Permission};
use clinicdesk_protocol::wire::{
    BREAK_GLASS_MINUTES, BREAK_GLASS_TEXT_MAX, BreakGlassGrant, BreakGlassRequest,
    BreakGlassReview, ClinicalAccess, REVIEW_NOTE_MAX, REVIEWER_COOLING_OFF_DAYS, ReviewNote,
    UserInfo,
};
use uuid::Uuid;

use crate::audit::server_chain::{self, ServerEvent, security_event};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::break_glass::AccountChange;
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

/// How long before a grant an admin's change to the grantee's account bars them from
/// reviewing it.
const COOLING_OFF_MS: i64 = REVIEWER_COOLING_OFF_DAYS * 86_400_000;

/// Whether `admin` may review a grant to `grantee` opened at `granted_at_ms`: not their own,
/// and not for an account they created or changed from 30 days before it on.
fn bars(
    admin: Uuid,
    grantee: Uuid,
    granted_at_ms: i64,
    changes: &[AccountChange],
) -> Option<&'static str> {
    if admin == grantee {
        return Some("grantee");
    }
    let changed = changes.iter().any(|c| {
        c.by == admin && c.account == grantee && c.at_ms >= granted_at_ms - COOLING_OFF_MS
    });
    changed.then_some("account_changed")
}

/// The clinic's grants, newest first (at most 500); each pending one flagged when the
/// clinic has fewer admins who may review it than reviews it still needs.
pub async fn queue(
    store: &Store,
    scope: &ClinicScope,
    filter: QueueFilter,
) -> Result<Vec<BreakGlassReview>, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    let mut grants =
        store::break_glass::grants(&mut tx, filter == QueueFilter::Pending, QUEUE_LIMIT).await?;
    let oldest_pending = grants
        .iter()
        .filter(|g| g.reviewed.is_none())
        .map(|g| g.grant.granted_at_ms)
        .min();
    if let Some(oldest) = oldest_pending {
        let admins = store::break_glass::active_admins(&mut tx).await?;
        let changes =
            store::break_glass::account_changes_since(&mut tx, oldest - COOLING_OFF_MS).await?;
        for g in grants.iter_mut().filter(|g| g.reviewed.is_none()) {
            let eligible = admins
                .iter()
                .filter(|a| bars(**a, g.user_id, g.grant.granted_at_ms, &changes).is_none())
                .filter(|a| !g.reviews.iter().any(|r| r.reviewed_by == **a))
                .count();
            let needed = usize::from(g.reviews_required).saturating_sub(g.reviews.len());
            g.short_of_reviewers = eligible < needed;
        }
    }
    tx.commit().await?;
    Ok(grants)
}

/// Records one admin's review of a grant with its `break_glass_reviewed` event, in one
/// transaction. The grant is reviewed once `reviews_required` different admins have (the
/// clinic's policy when it was opened; 2 by default). No admin reviews a grant opened for
/// themselves, or for an account they created or changed from 30 days before the grant on
/// (`403`, field `grantee` or `account_changed`): one admin must not be able to make a
/// clinician's account, break the glass as it and close the review alone. Each admin
/// reviews a grant once (`409`, field `reviewer`); a reviewed grant takes no more (`409`,
/// field `grant_id`).
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
    // Reviews of one grant are counted one at a time, so concurrent ones complete it once.
    store::break_glass::lock_grant(&mut tx, grant_id).await?;
    let found = store::break_glass::grant_standing(&mut tx, grant_id)
        .await?
        .ok_or(ServerError::NotFound)?;
    if found.reviewed {
        return Err(ServerError::Conflict { field: "grant_id" });
    }
    let changes =
        store::break_glass::account_changes_since(&mut tx, found.granted_at_ms - COOLING_OFF_MS)
            .await?;
    if let Some(field) = bars(admin.user_id, found.grantee, found.granted_at_ms, &changes) {
        return Err(ServerError::ForbiddenField { field });
    }
    let earlier = store::break_glass::grant_reviews(&mut tx, grant_id).await?;
    if earlier.iter().any(|r| r.reviewed_by == admin.user_id) {
        return Err(ServerError::Conflict { field: "reviewer" });
    }
    let review = ReviewNote {
        reviewed_by: admin.user_id,
        reviewed_at_ms: state.clock.now_ms(),
        note: Phi::new(note.trim().to_owned()),
    };
    store::break_glass::insert_review(&mut tx, grant_id, &review).await?;
    let complete = earlier.len() + 1 >= usize::from(found.reviews_required);
    if complete
        && !store::break_glass::complete(
            &mut tx,
            grant_id,
            admin.user_id,
            review.reviewed_at_ms,
            note.trim(),
        )
        .await?
    {
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
    event.patient_id = Some(found.patient_id);
    event.fields = vec!["note".to_owned()];
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    tracing::info!(%grant_id, by = %admin.user_id, complete, "break-glass grant reviewed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_may_not_review_their_own_grant_nor_one_for_an_account_they_recently_changed() {
        let (admin, grantee, other) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let granted = 100 * 86_400_000;
        let change = |by, account, days_before: i64| AccountChange {
            by,
            account,
            at_ms: granted - days_before * 86_400_000,
        };
        assert_eq!(bars(grantee, grantee, granted, &[]), Some("grantee"));
        assert_eq!(bars(admin, grantee, granted, &[]), None);
        for days_before in [0, 29, 30] {
            assert_eq!(
                bars(
                    admin,
                    grantee,
                    granted,
                    &[change(admin, grantee, days_before)]
                ),
                Some("account_changed"),
                "{days_before} days before"
            );
        }
        // After the grant counts too: an admin who changes the account now is no reviewer.
        assert_eq!(
            bars(admin, grantee, granted, &[change(admin, grantee, -3)]),
            Some("account_changed")
        );
        for unrelated in [
            change(admin, grantee, 31),
            change(admin, other, 1),
            change(other, grantee, 1),
        ] {
            assert_eq!(bars(admin, grantee, granted, &[unrelated]), None);
        }
    }
}
