//! The audit trail's API: device batch upload (authenticated by the events' signatures, so
//! a locked app keeps uploading), and for admins search, checkpoints, proofs and alerts.

use axum::Json;
use axum::extract::{Path, Query, State};
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::merkle::{ConsistencyEvidence, InclusionEvidence, SignedCheckpoint};
use clinicdesk_protocol::wire::{AuditAlerts, AuditPage, AuditReceipt, AuditUpload};
use serde::Deserialize;
use uuid::Uuid;

use super::Body;
use crate::app::AppState;
use crate::audit::query::AuditQuery;
use crate::audit::{ingest, log, query};
use crate::auth::Authenticated;
use crate::error::ServerError;

#[utoipa::path(post, path = "/v1/audit/batches", request_body = AuditUpload,
    responses((status = 200, body = AuditReceipt), (status = 409, body = ApiError),
        (status = 403, body = ApiError)))]
#[tracing::instrument(skip_all, fields(device_id = %upload.device_id, n = upload.events.len()))]
pub async fn upload(
    State(state): State<AppState>,
    Body(upload): Body<AuditUpload>,
) -> Result<Json<AuditReceipt>, ServerError> {
    Ok(Json(ingest::ingest(&state, &upload).await?))
}

#[utoipa::path(get, path = "/v1/audit/events", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ApiError)),
    security(("session" = [])))]
pub async fn search(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ServerError> {
    Ok(Json(
        query::search(state.store.pool(), auth.scope(), &q).await?,
    ))
}

/// The clinic's newest checkpoint, signing a new one first if the log has grown.
#[utoipa::path(get, path = "/v1/audit/checkpoint",
    responses((status = 200, body = SignedCheckpoint)), security(("session" = [])))]
pub async fn checkpoint(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<SignedCheckpoint>, ServerError> {
    let clinic = auth.scope().clinic_id();
    let mut tx = state.store.pool().begin().await?;
    log::lock_clinic(&mut tx, clinic).await?;
    let tree = log::frontier(&mut tx, clinic).await?;
    let signed = log::checkpoint(
        &mut tx,
        &state.audit_key,
        clinic,
        &tree,
        state.clock.now_ms(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(signed))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TreeSize {
    /// A published checkpoint's size.
    pub tree_size: u64,
}

async fn require_checkpoint(
    conn: &mut sqlx::SqliteConnection,
    clinic: Uuid,
    size: u64,
    field: &'static str,
) -> Result<(), ServerError> {
    log::checkpoint_at(conn, clinic, size)
        .await?
        .map(|_| ())
        .ok_or(ServerError::BadRequest { field })
}

/// Proof that an event is in the checkpoint of `tree_size` (another clinic's event is 404).
#[utoipa::path(get, path = "/v1/audit/events/{event_id}/inclusion", params(("event_id" = Uuid, Path), TreeSize),
    responses((status = 200, body = InclusionEvidence), (status = 404, body = ApiError)),
    security(("session" = [])))]
pub async fn inclusion(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(event_id): Path<Uuid>,
    Query(TreeSize { tree_size }): Query<TreeSize>,
) -> Result<Json<InclusionEvidence>, ServerError> {
    let clinic = auth.scope().clinic_id();
    let mut conn = state.store.pool().acquire().await?;
    let leaf = log::leaf_of(&mut conn, clinic, event_id)
        .await?
        .ok_or(ServerError::NotFound)?;
    require_checkpoint(&mut conn, clinic, tree_size, "tree_size").await?;
    if leaf >= tree_size {
        return Err(ServerError::BadRequest { field: "tree_size" });
    }
    Ok(Json(
        log::inclusion(&mut conn, clinic, leaf, tree_size).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Sizes {
    pub old_size: u64,
    pub new_size: u64,
}

/// Proof that the checkpoint of `old_size` is a prefix of the one of `new_size`.
#[utoipa::path(get, path = "/v1/audit/consistency", params(Sizes),
    responses((status = 200, body = ConsistencyEvidence), (status = 400, body = ApiError)),
    security(("session" = [])))]
pub async fn consistency(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(Sizes { old_size, new_size }): Query<Sizes>,
) -> Result<Json<ConsistencyEvidence>, ServerError> {
    let clinic = auth.scope().clinic_id();
    let mut conn = state.store.pool().acquire().await?;
    require_checkpoint(&mut conn, clinic, old_size, "old_size").await?;
    require_checkpoint(&mut conn, clinic, new_size, "new_size").await?;
    if old_size == 0 || old_size > new_size {
        return Err(ServerError::BadRequest { field: "old_size" });
    }
    Ok(Json(
        log::consistency(&mut conn, clinic, old_size, new_size).await?,
    ))
}

/// Tamper alerts (forks, broken links) and device sequences still outstanding.
#[utoipa::path(get, path = "/v1/audit/alerts",
    responses((status = 200, body = AuditAlerts)), security(("session" = [])))]
pub async fn alerts(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<AuditAlerts>, ServerError> {
    Ok(Json(query::alerts(state.store.pool(), auth.scope()).await?))
}
