//! The clinic's own settings: what every workstation reads (its name, its time zone and
//! today's date there, how many admins review a break-glass grant), and the admin's changes
//! of its time zone and of that count, each recorded in its transaction.

use clinicdesk_protocol::audit::{AuditAction, RequestSeen};
use clinicdesk_protocol::wire::{ClinicSettings, ReviewersChange, TimeZoneChange, UserInfo};

use crate::audit::server_chain::{self, security_event};
use crate::clinical::days;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::{Store, clinics};

const TIME_ZONE_ROUTE: &str = "/v1/clinic/time-zone";
const REVIEWERS_ROUTE: &str = "/v1/clinic/break-glass-reviewers";

pub async fn settings(
    store: &Store,
    scope: &ClinicScope,
    now_ms: i64,
) -> Result<ClinicSettings, ServerError> {
    let clinic_id = scope.clinic_id();
    let name = store
        .clinic_name(clinic_id)
        .await?
        .ok_or(ServerError::NotFound)?;
    let time_zone = store.clinic_time_zone(scope).await?;
    let today = days::local_date(&days::stored_zone(&time_zone), now_ms)?.to_string();
    let break_glass_reviewers = store.break_glass_reviewers(scope).await?;
    Ok(ClinicSettings {
        clinic_id,
        name,
        time_zone,
        today,
        break_glass_reviewers,
    })
}

/// Moves the clinic's days to another IANA time zone, with its `update` event of `Clinic`.
pub async fn set_time_zone(
    state: &AppState,
    scope: &ClinicScope,
    by: &UserInfo,
    change: &TimeZoneChange,
    seen: RequestSeen,
) -> Result<ClinicSettings, ServerError> {
    days::zone(&change.time_zone, "time_zone")?;
    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::set_time_zone(&mut tx, &change.time_zone).await?;
    let mut event = security_event(
        by,
        AuditAction::Update,
        "Clinic",
        scope.clinic_id().to_string(),
        TIME_ZONE_ROUTE,
        seen,
    );
    event.fields = vec!["time_zone".to_owned()];
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    settings(&state.store, scope, state.clock.now_ms()).await
}

/// Sets how many different admins review each break-glass grant opened from now on (1 or
/// 2), with its `update` event of `Clinic`. Grants already open keep the count they were
/// opened under.
pub async fn set_break_glass_reviewers(
    state: &AppState,
    scope: &ClinicScope,
    by: &UserInfo,
    change: &ReviewersChange,
    seen: RequestSeen,
) -> Result<ClinicSettings, ServerError> {
    if !(1..=2).contains(&change.reviewers) {
        return Err(ServerError::BadRequest { field: "reviewers" });
    }
    let mut tx = state.store.clinic_tx(scope).await?;
    clinics::set_break_glass_reviewers(&mut tx, change.reviewers).await?;
    let mut event = security_event(
        by,
        AuditAction::Update,
        "Clinic",
        scope.clinic_id().to_string(),
        REVIEWERS_ROUTE,
        seen,
    );
    event.fields = vec!["break_glass_reviewers".to_owned()];
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    settings(&state.store, scope, state.clock.now_ms()).await
}
