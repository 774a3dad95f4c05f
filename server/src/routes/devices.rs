//! Devices: a one-time code (from an admin or the operator's console) registers a
//! workstation's Ed25519 public key; admins list the clinic's workstations and revoke them
//! (recorded on the server chain). A workstation whose OS keychain lost its device secret
//! gets the escrowed copy back, and only it: from a session on that device (password and a
//! fresh second factor) proving the device's recovery key again.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::audit::from_hex;
use clinicdesk_protocol::audit::to_hex;
use clinicdesk_protocol::wire::{
    DeviceList, EnrollRequest, EnrollResponse, EnrollmentCodeIssued, EscrowRelease, EscrowedSecret,
    escrow_proof_bytes,
};
use ed25519_dalek::VerifyingKey;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{Body, Id};
use crate::app::AppState;
use crate::audit::access::Seen;
use crate::audit::key::verify_strict_hex;
use crate::audit::server_chain::{self, security_event};
use crate::auth::{Authenticated, live_device};
use crate::device_registry;
use crate::error::ServerError;
use crate::random::{hash_secret, normalize_code};
use crate::routes::schedule::rfc3339;
use crate::seed;

#[utoipa::path(post, path = "/v1/devices/enroll", request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn enroll(
    State(state): State<AppState>,
    seen: Seen,
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
    // The key signs the device's audit events: it must be one the audit format's rule
    // accepts (a low-order key would let anyone sign "its" events).
    clinicdesk_protocol::signature::PublicKey::from_bytes(&key_bytes).ok_or(
        ServerError::BadRequest {
            field: "public_key",
        },
    )?;
    let device_secret: Zeroizing<[u8; 32]> = from_hex(req.device_secret.expose())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Zeroizing::new)
        .ok_or(ServerError::BadRequest {
            field: "device_secret",
        })?;
    let recovery_bytes: [u8; 32] = from_hex(&req.recovery_public_key)
        .and_then(|b| b.try_into().ok())
        .filter(|b| *b != key_bytes)
        .ok_or(ServerError::BadRequest {
            field: "recovery_public_key",
        })?;
    VerifyingKey::from_bytes(&recovery_bytes).map_err(|_| ServerError::BadRequest {
        field: "recovery_public_key",
    })?;
    let device_id = Uuid::now_v7();
    let escrow =
        device_registry::escrow_of(&state, device_id, &device_secret, &req.recovery_public_key)?;
    let code_hash = hash_secret(&normalize_code(req.enrollment_code.expose()));
    let clinic_id = device_registry::enroll(
        &state,
        &code_hash,
        device_id,
        name,
        &req.public_key.to_lowercase(),
        &escrow,
        seen.for_session(device_id),
    )
    .await?;
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
    seen: Seen,
    Id(device_id): Id<Uuid>,
) -> Result<axum::http::StatusCode, ServerError> {
    if !state
        .store
        .revoke_device(auth.scope(), device_id, state.clock.now_ms())
        .await?
    {
        return Err(ServerError::NotFound);
    }
    let admin = &auth.principal.user;
    let event = security_event(
        admin,
        AuditAction::DeviceRevoked,
        "Device",
        device_id.to_string(),
        "revoke_device",
        seen.for_session(auth.principal.device_id),
    );
    server_chain::record(&state, auth.scope(), vec![event]).await?;
    tracing::info!(by = %admin.user_id, "device revoked");
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
        (status = 404, body = ApiError, description = "No escrow for the session's device")),
    security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn release_escrow(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Body(req): Body<EscrowRelease>,
) -> Result<Json<EscrowedSecret>, ServerError> {
    let device = live_device(&state, auth.principal.device_id).await?;
    let now = state.clock.now_ms();
    if !state.store.take_nonce(&req.nonce, device.id, now).await? {
        return Err(ServerError::InvalidSignature { field: "nonce" });
    }
    let recovery_key = state
        .store
        .recovery_key(device.id)
        .await?
        .ok_or(ServerError::NotFound)?;
    let key = VerifyingKey::from_bytes(&recovery_key)
        .map_err(|_| ServerError::Internal("stored recovery key invalid"))?;
    let proof = escrow_proof_bytes(&req.nonce, device.id);
    if !verify_strict_hex(&key, &proof, &req.recovery_signature) {
        return Err(ServerError::InvalidSignature {
            field: "recovery_signature",
        });
    }
    let sealed = state
        .store
        .sealed_device_secret(auth.scope(), device.id)
        .await?
        .ok_or(ServerError::NotFound)?;
    let secret = state.escrow.open(device.id, &sealed)?;
    // No audit, no release: the event commits before the secret leaves.
    let user = &auth.principal.user;
    let event = security_event(
        user,
        AuditAction::DeviceSecretReleased,
        "Device",
        device.id.to_string(),
        "release_escrow",
        seen.for_session(device.id),
    );
    server_chain::record(&state, auth.scope(), vec![event]).await?;
    tracing::info!(device_id = %device.id, by = %user.user_id, "escrowed device secret released");
    Ok(Json(EscrowedSecret {
        device_secret: to_hex(&secret).into(),
    }))
}
