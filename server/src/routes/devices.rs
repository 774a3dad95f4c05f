//! Device enrollment: a one-time code registers a workstation's Ed25519 public key.

use axum::Json;
use axum::extract::{Path, State};
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::from_hex;
use clinicdesk_protocol::wire::{EnrollRequest, EnrollResponse};
use ed25519_dalek::VerifyingKey;
use uuid::Uuid;

use super::Body;
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::error::ServerError;
use crate::random::{hash_secret, normalize_code};

#[utoipa::path(post, path = "/v1/devices/enroll", request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn enroll(
    State(state): State<AppState>,
    Body(req): Body<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ServerError> {
    let name = req.device_name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(ServerError::BadRequest {
            field: "device_name",
        });
    }
    let key_bytes: [u8; 32] = from_hex(&req.public_key)
        .and_then(|b| b.try_into().ok())
        .ok_or(ServerError::BadRequest {
            field: "public_key",
        })?;
    VerifyingKey::from_bytes(&key_bytes).map_err(|_| ServerError::BadRequest {
        field: "public_key",
    })?;
    let device_id = Uuid::now_v7();
    let now = state.clock.now_ms();
    let code_hash = hash_secret(&normalize_code(&req.enrollment_code));
    let clinic_id = state
        .store
        .enroll_device(
            &code_hash,
            device_id,
            name,
            &req.public_key.to_lowercase(),
            now,
        )
        .await?
        .ok_or(ServerError::InvalidEnrollmentCode)?;
    let clinic_name = state
        .store
        .clinic_name(clinic_id)
        .await?
        .ok_or(ServerError::Internal("clinic vanished"))?;
    tracing::info!(%device_id, %clinic_id, "device enrolled");
    Ok(Json(EnrollResponse {
        device_id,
        clinic_id,
        clinic_name,
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
    Path(device_id): Path<Uuid>,
) -> Result<axum::http::StatusCode, ServerError> {
    if !state
        .store
        .revoke_device(auth.scope(), device_id, state.clock.now_ms())
        .await?
    {
        return Err(ServerError::NotFound);
    }
    tracing::info!(by = %auth.principal.user.user_id, "device revoked");
    Ok(axum::http::StatusCode::NO_CONTENT)
}
