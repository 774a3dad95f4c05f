//! Actions the clinic's operator takes on the server's console (no session): they name
//! the object, and the clinic scope comes from that object's own row.

use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::{ClinicScope, Console};
use crate::state::AppState;
use crate::store::Store;
use crate::time::Clock;

/// Revokes a device and its sessions, with its `device_revoked` event by the console in
/// the same transaction; its next request answers `device_revoked`, which the app obeys by
/// wiping itself. Returns false for an unknown (or already revoked) device.
pub async fn revoke_device(state: &AppState, device_id: Uuid) -> Result<bool, ServerError> {
    let Some(device) = state.store.device(device_id).await? else {
        return Ok(false);
    };
    let console = Console::operator();
    let scope = ClinicScope::of_console(&console, device.clinic_id);
    let actor = console.actor(device.clinic_id);
    match crate::devices::registry::revoke(
        state,
        &scope,
        &actor,
        device_id,
        console.seen("revoke-device"),
    )
    .await
    {
        Ok(()) => {
            tracing::info!(%device_id, "device revoked by the operator");
            Ok(true)
        }
        Err(ServerError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The clinic's access review as CSV, for `clinicdesk-server audit access-review` (with
/// `every_user`, admins and other users without PHI access too).
pub async fn access_review(
    store: &Store,
    clinic_id: Uuid,
    every_user: bool,
) -> Result<Vec<u8>, ServerError> {
    use crate::audit::access_review::{Reviewed, csv};
    let reviewed = if every_user {
        Reviewed::EveryUser
    } else {
        Reviewed::PhiAccess
    };
    csv(
        store,
        &ClinicScope::of_console(&Console::operator(), clinic_id),
        reviewed,
    )
    .await
}

/// The access policies a clinic runs under, as an auditor asks for them: what its admin
/// set, and the limits every clinic has. For `clinicdesk-server audit policies`.
#[derive(Debug, serde::Serialize)]
pub struct Policies {
    pub clinic_id: Uuid,
    pub clinic_name: String,
    /// A workstation locks after this long without input (and the server ends the session).
    pub idle_timeout_secs: u64,
    /// A workstation may unlock offline for this long after its last online sign-in.
    pub max_offline_secs: u64,
    /// Every session ends this long after its sign-in, whatever its use.
    pub session_max_age_secs: i64,
    /// A sign-in beyond this many live sessions of a user ends the oldest.
    pub max_sessions_per_user: i64,
    /// Every session needs a second factor (TOTP, a security key or a recovery code).
    pub second_factor_required: bool,
    /// How many different admins review each break-glass grant.
    pub break_glass_reviewers: u8,
    pub time_zone: String,
}

pub async fn policies(store: &Store, clinic_id: Uuid) -> Result<Policies, ServerError> {
    let scope = ClinicScope::of_console(&Console::operator(), clinic_id);
    let (idle_timeout_secs, max_offline_secs) = store.lock_policy(clinic_id).await?;
    Ok(Policies {
        clinic_id,
        clinic_name: store
            .clinic_name(clinic_id)
            .await?
            .ok_or(ServerError::NotFound)?,
        idle_timeout_secs,
        max_offline_secs,
        session_max_age_secs: crate::session::SESSION_MAX_AGE_MS / 1000,
        max_sessions_per_user: crate::store::MAX_SESSIONS_PER_USER,
        // No route issues a session on a password alone (`sign_in::mfa`): not a setting.
        second_factor_required: true,
        break_glass_reviewers: store.break_glass_reviewers(&scope).await?,
        time_zone: store.clinic_time_zone(&scope).await?,
    })
}

/// One page of a clinic's audit search, for `clinicdesk-server audit search`.
pub async fn search_audit(
    store: &Store,
    clinic_id: Uuid,
    query: &crate::audit::query::AuditQuery,
) -> Result<clinicdesk_protocol::wire::AuditPage, ServerError> {
    let scope = ClinicScope::of_console(&Console::operator(), clinic_id);
    crate::audit::query::search(store, &scope, query).await
}

/// Writes a clinic's audit export, for `clinicdesk-server audit export`.
pub async fn export_audit(
    state: &crate::AppState,
    clinic_id: Uuid,
    filters: &clinicdesk_protocol::export::ExportFilters,
    format: crate::audit::export::Format,
    out: &crate::audit::export::Chunks,
) -> Result<u64, ServerError> {
    let scope = ClinicScope::of_console(&Console::operator(), clinic_id);
    crate::audit::export::export(state, &scope, filters, format, out).await
}

/// A clinic's public keys, for `clinicdesk-server audit keys`.
pub async fn clinic_keys(
    state: &crate::AppState,
    clinic_id: Uuid,
) -> Result<clinicdesk_protocol::export::ClinicKeys, ServerError> {
    crate::audit::export::clinic_keys(
        state,
        &ClinicScope::of_console(&Console::operator(), clinic_id),
    )
    .await
}

/// The patient access report, for `clinicdesk-server audit report`.
pub async fn patient_access_report(
    state: &crate::AppState,
    clinic_id: Uuid,
    patient_id: Uuid,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    order: clinicdesk_protocol::export::ReportOrder,
) -> Result<clinicdesk_protocol::export::PatientAccessReport, ServerError> {
    let scope = ClinicScope::of_console(&Console::operator(), clinic_id);
    crate::audit::report::patient_access_report(state, &scope, patient_id, from_ms, to_ms, order)
        .await
}

/// A new operator credential for `POST /v1/clinics`, shown once: the server keeps only its
/// hash. Returns the token's id (for revocation) and the token.
pub async fn create_operator_token(
    store: &Store,
    clock: &dyn Clock,
    name: &str,
) -> Result<(Uuid, String), ServerError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(ServerError::BadRequest { field: "name" });
    }
    let id = Uuid::now_v7();
    let token = crate::secrets::random::token()?;
    store
        .insert_operator_token(
            id,
            name,
            &crate::secrets::random::hash_secret(&token),
            clock.now_ms(),
        )
        .await?;
    tracing::info!(token_id = %id, "operator token created");
    Ok((id, token))
}

/// Revokes an operator credential; false if there is no such live token.
pub async fn revoke_operator_token(
    store: &Store,
    clock: &dyn Clock,
    id: Uuid,
) -> Result<bool, ServerError> {
    store.revoke_operator_token(id, clock.now_ms()).await
}
