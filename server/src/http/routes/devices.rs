//! Devices: a one-time code (from an admin or the operator's console) registers a
//! workstation's Ed25519 public key; admins list the clinic's workstations and revoke them
//! (recorded on the server chain). A workstation whose OS keychain lost its device secret
//! gets the escrowed copy back, and only it: from a session on that device (password and a
//! fresh second factor) proving the device's recovery key again. Each user's session says
//! what their offline copy on its workstation holds (counts), for the admins' list.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::to_hex;
use clinicdesk_protocol::wire::{
    DeviceList, EnrollRequest, EnrollResponse, EnrollmentCodeIssued, EscrowRelease, EscrowedSecret,
    OfflineCopyReport,
};
use uuid::Uuid;

use crate::admin::seed;
use crate::audit::access::Seen;
use crate::devices::escrow;
use crate::devices::registry as device_registry;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, Id};
use crate::state::AppState;
use crate::time::rfc3339;

#[utoipa::path(post, path = "/v1/devices/enroll", request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn enroll(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ServerError> {
    let enrolled =
        device_registry::enroll_workstation(&state, &req, seen.without_session()).await?;
    Ok(Json(EnrollResponse {
        device_id: enrolled.device_id,
        clinic_id: enrolled.clinic_id,
        clinic_name: enrolled.clinic_name,
        audit_public_key: state.audit_key.public_hex(),
    }))
}

#[utoipa::path(post, path = "/v1/devices/{device_id}/revoke",
    params(("device_id" = Uuid, Path, description = "The device to revoke")),
    responses((status = 204), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(%device_id))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(device_id): Id<Uuid>,
) -> Result<axum::http::StatusCode, ServerError> {
    device_registry::revoke(
        &state,
        auth.scope(),
        &auth.principal.user,
        device_id,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/devices",
    responses((status = 200, body = DeviceList)), security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<DeviceList>, ServerError> {
    Ok(Json(DeviceList {
        devices: device_registry::list(&state.store, auth.scope()).await?,
    }))
}

#[utoipa::path(put, path = "/v1/devices/this/offline-copy", request_body = OfflineCopyReport,
    responses((status = 204, description = "Kept: the admins' devices list shows it"),
        (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn report_offline_copy(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(report): Body<OfflineCopyReport>,
) -> Result<axum::http::StatusCode, ServerError> {
    device_registry::report_offline_copy(
        &state.store,
        auth.scope(),
        &auth.principal,
        report,
        state.clock.now_ms(),
    )
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// How long an admin's enrollment code lives.
const CODE_TTL_MINS: i64 = 15;

#[utoipa::path(post, path = "/v1/devices/enrollment-codes",
    responses((status = 200, body = EnrollmentCodeIssued)), security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn issue_code(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<EnrollmentCodeIssued>, ServerError> {
    let admin = &auth.principal.user;
    let enrollment_code = seed::issue_enrollment_code(
        &state.store,
        state.clock.as_ref(),
        auth.scope().clinic_id(),
        CODE_TTL_MINS,
        Some(admin.user_id),
    )
    .await?;
    tracing::info!(by = %admin.user_id, "enrollment code issued");
    Ok(Json(EnrollmentCodeIssued {
        enrollment_code: enrollment_code.into(),
        expires_at: rfc3339(state.clock.now_ms() + CODE_TTL_MINS * 60_000)?,
    }))
}

#[utoipa::path(post, path = "/v1/devices/escrow/release", request_body = EscrowRelease,
    responses((status = 200, body = EscrowedSecret), (status = 401, body = ApiError),
        (status = 403, body = ApiError,
            description = "The session is not a recovery sign-in (field `session`)"),
        (status = 404, body = ApiError, description = "No escrow for the session's device")),
    security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn release_escrow(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Body(req): Body<EscrowRelease>,
) -> Result<Json<EscrowedSecret>, ServerError> {
    let device_id = auth.principal.device_id;
    let secret = escrow::release(
        &state,
        auth.scope(),
        &auth.principal,
        &req,
        seen.for_session(device_id),
    )
    .await?;
    Ok(Json(EscrowedSecret {
        device_secret: to_hex(&secret).into(),
    }))
}
