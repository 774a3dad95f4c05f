//! Ingest of device audit events: each signature is verified against the registered
//! device key and each event must extend that device's hash chain. Re-sent events are
//! accepted once. (Fork alerts, gap reports and the Merkle log come with the audit issue.)

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::{Hash32, SignedAuditEvent, from_hex};
use clinicdesk_protocol::wire::{AuditReceipt, AuditUpload};
use ed25519_dalek::{Signature, VerifyingKey};

use super::Body;
use crate::app::AppState;
use crate::auth::Authenticated;
use crate::error::ServerError;

/// Most events accepted in one upload.
pub const MAX_BATCH: usize = 500;

#[utoipa::path(post, path = "/v1/audit/events", request_body = AuditUpload,
    responses((status = 200, body = AuditReceipt), (status = 409, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(device_id = %auth.principal.device_id, n = upload.events.len()))]
pub async fn upload(
    State(state): State<AppState>,
    auth: Authenticated,
    Body(upload): Body<AuditUpload>,
) -> Result<Json<AuditReceipt>, ServerError> {
    if upload.events.len() > MAX_BATCH {
        return Err(ServerError::BadRequest { field: "events" });
    }
    let scope = auth.scope();
    let device = state
        .store
        .device(auth.principal.device_id)
        .await?
        .ok_or(ServerError::DeviceUnknown)?;
    let key = VerifyingKey::from_bytes(&device.public_key)
        .map_err(|_| ServerError::Internal("stored device key invalid"))?;

    let mut stored = Vec::with_capacity(upload.events.len());
    let mut tip = state.store.last_device_event(scope, device.id).await?;
    for signed in &upload.events {
        let e = &signed.event;
        if e.clinic_id != scope.clinic_id() || e.device_id != device.id {
            return Err(ServerError::Forbidden);
        }
        verify_signature(&key, signed)?;
        if !state.store.is_clinic_user(scope, e.actor_user_id).await? {
            return Err(ServerError::BadRequest {
                field: "actor_user_id",
            });
        }
        let hash = e.hash();
        match state
            .store
            .device_event_hash(scope, device.id, e.device_seq)
            .await?
        {
            Some(existing) if existing == hash => {
                stored.push(e.id);
                continue;
            }
            Some(_) => return Err(ServerError::AuditChainBroken),
            None => {}
        }
        let (expected_seq, expected_prev) = match tip {
            Some((seq, h)) => (seq + 1, h),
            None => (1, Hash32::GENESIS),
        };
        if e.device_seq != expected_seq || e.prev_hash != expected_prev {
            return Err(ServerError::AuditChainBroken);
        }
        state
            .store
            .append_audit_event(scope, signed, state.clock.now_ms())
            .await?;
        tip = Some((e.device_seq, hash));
        stored.push(e.id);
    }
    Ok(Json(AuditReceipt {
        stored,
        highest_contiguous_seq: tip.map_or(0, |(seq, _)| seq),
    }))
}

fn verify_signature(key: &VerifyingKey, signed: &SignedAuditEvent) -> Result<(), ServerError> {
    let signature = from_hex(&signed.signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(ServerError::InvalidSignature { field: "signature" })?;
    key.verify_strict(&signed.event.canonical_bytes(), &signature)
        .map_err(|_| ServerError::InvalidSignature { field: "signature" })
}
