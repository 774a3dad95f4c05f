//! Ingest of device audit events: the batch is authenticated by its signatures (each one
//! verified against the registered, non-revoked device key, so a locked app keeps
//! uploading without a user session) and each event must extend that device's chain. Re-sent events are
//! accepted once. (Fork alerts, gap reports and the Merkle log come with the audit issue.)

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::wire::{AuditReceipt, AuditUpload};

use super::Body;
use crate::app::AppState;
use crate::auth::verify_device_batch;
use crate::error::ServerError;

/// Most events accepted in one upload.
pub const MAX_BATCH: usize = 500;

#[utoipa::path(post, path = "/v1/audit/batches", request_body = AuditUpload,
    responses((status = 200, body = AuditReceipt), (status = 409, body = ApiError),
        (status = 403, body = ApiError)))]
#[tracing::instrument(skip_all, fields(device_id = %upload.device_id, n = upload.events.len()))]
pub async fn upload(
    State(state): State<AppState>,
    Body(upload): Body<AuditUpload>,
) -> Result<Json<AuditReceipt>, ServerError> {
    if upload.events.len() > MAX_BATCH {
        return Err(ServerError::BadRequest { field: "events" });
    }
    let (device, scope) = verify_device_batch(&state, upload.device_id, &upload.events).await?;
    let scope = &scope;

    let mut stored = Vec::with_capacity(upload.events.len());
    let mut tip = state.store.last_device_event(scope, device.id).await?;
    for signed in &upload.events {
        let e = &signed.event;
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
