//! The audit trail's API: device batch upload (authenticated by the events' signatures, so
//! a locked app keeps uploading), and for admins search, checkpoints, proofs and alerts.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::merkle::{ConsistencyEvidence, InclusionEvidence, SignedCheckpoint};
use clinicdesk_protocol::wire::{AuditAlerts, AuditPage, AuditReceipt, AuditUpload};
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::access::Seen;
use crate::audit::query::AuditQuery;
use crate::audit::{ingest, log, query};
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, Id, Params};
use crate::state::AppState;
use crate::store::ClinicTx;

#[utoipa::path(post, path = "/v1/audit/batches", request_body = AuditUpload,
    responses((status = 200, body = AuditReceipt), (status = 409, body = ApiError),
        (status = 403, body = ApiError)))]
#[tracing::instrument(skip_all, fields(device_id = %upload.device_id, n = upload.events.len()))]
pub async fn upload(
    State(state): State<AppState>,
    seen: Seen,
    Body(upload): Body<AuditUpload>,
) -> Result<Json<AuditReceipt>, ServerError> {
    // No session: the events' signatures authenticate the upload. Ingest also marks the
    // device seen.
    let receipt = ingest::ingest(&state, &upload, &seen.without_session()).await?;
    Ok(Json(receipt))
}

#[utoipa::path(get, path = "/v1/audit/events", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ApiError)),
    security(("session" = [])))]
pub async fn search(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(q): Params<AuditQuery>,
) -> Result<Json<AuditPage>, ServerError> {
    Ok(Json(query::search(&state.store, auth.scope(), &q).await?))
}

/// The clinic's newest checkpoint, signing a new one first if the log has grown.
#[utoipa::path(get, path = "/v1/audit/checkpoint",
    responses((status = 200, body = SignedCheckpoint)), security(("session" = [])))]
pub async fn checkpoint(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<SignedCheckpoint>, ServerError> {
    Ok(Json(
        crate::audit::export::fresh_checkpoint(&state, auth.scope()).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TreeSize {
    /// A published checkpoint's size.
    pub tree_size: u64,
}

async fn require_checkpoint(
    tx: &mut ClinicTx,
    size: u64,
    field: &'static str,
) -> Result<(), ServerError> {
    // No log holds 2^63 leaves; such a size names no checkpoint (schemathesis tried one).
    if i64::try_from(size).is_err() {
        return Err(ServerError::BadRequest { field });
    }
    let clinic = tx.clinic_id();
    log::checkpoint_at(tx, clinic, size)
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
    Id(event_id): Id<Uuid>,
    Params(TreeSize { tree_size }): Params<TreeSize>,
) -> Result<Json<InclusionEvidence>, ServerError> {
    let clinic = auth.scope().clinic_id();
    let mut tx = state.store.clinic_tx(auth.scope()).await?;
    let leaf = log::leaf_of(&mut tx, clinic, event_id)
        .await?
        .ok_or(ServerError::NotFound)?;
    require_checkpoint(&mut tx, tree_size, "tree_size").await?;
    if leaf >= tree_size {
        return Err(ServerError::BadRequest { field: "tree_size" });
    }
    let proof = log::inclusion(&mut tx, clinic, leaf, tree_size).await?;
    tx.commit().await?;
    Ok(Json(proof))
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
    Params(Sizes { old_size, new_size }): Params<Sizes>,
) -> Result<Json<ConsistencyEvidence>, ServerError> {
    let clinic = auth.scope().clinic_id();
    let mut tx = state.store.clinic_tx(auth.scope()).await?;
    require_checkpoint(&mut tx, old_size, "old_size").await?;
    require_checkpoint(&mut tx, new_size, "new_size").await?;
    if old_size == 0 || old_size > new_size {
        return Err(ServerError::BadRequest { field: "old_size" });
    }
    let proof = log::consistency(&mut tx, clinic, old_size, new_size).await?;
    tx.commit().await?;
    Ok(Json(proof))
}

/// Tamper alerts (forks, broken links) and device sequences still outstanding.
#[utoipa::path(get, path = "/v1/audit/alerts",
    responses((status = 200, body = AuditAlerts)), security(("session" = [])))]
pub async fn alerts(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<AuditAlerts>, ServerError> {
    Ok(Json(query::alerts(&state.store, auth.scope()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv`, `jsonl` (the verifiable bundle) or `fhir` (an R4 Bundle of AuditEvents).
    #[param(value_type = String)]
    pub format: crate::audit::export::Format,
    pub patient_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    #[param(value_type = Option<String>)]
    pub action: Option<clinicdesk_protocol::audit::AuditAction>,
    pub from_ms: Option<i64>,
    /// Exclusive.
    pub to_ms: Option<i64>,
}

/// The access review: every user whose role reaches patient data (active or not), their
/// role, status, second factors, the workstations they signed in on and their last sign-in.
#[utoipa::path(get, path = "/v1/audit/access-review",
    responses((status = 200, description = "the access review", content_type = "text/csv")),
    security(("session" = [])))]
pub async fn access_review(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<axum::response::Response, ServerError> {
    use axum::response::IntoResponse;
    let csv = crate::audit::access_review::csv(
        &state.store,
        auth.scope(),
        crate::audit::access_review::Reviewed::PhiAccess,
    )
    .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        csv,
    )
        .into_response())
}

/// The clinic's events matching the filters, newest first, streamed as CSV, JSON Lines or
/// FHIR. A stream cut short by an error has no signed end line (`jsonl`) or is invalid JSON.
#[utoipa::path(get, path = "/v1/audit/export", params(ExportParams),
    responses((status = 200, description = "the export", content_type = "text/csv"),
        (status = 400, body = ApiError)),
    security(("session" = [])))]
pub async fn export(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(p): Params<ExportParams>,
) -> Result<axum::response::Response, ServerError> {
    use axum::response::IntoResponse;
    let filters = clinicdesk_protocol::export::ExportFilters {
        patient_id: p.patient_id,
        user_id: p.user_id,
        device_id: p.device_id,
        action: p.action,
        from_ms: p.from_ms,
        to_ms: p.to_ms,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let scope = auth.scope().clone();
    tokio::spawn(async move {
        if let Err(e) = crate::audit::export::export(&state, &scope, &filters, p.format, &tx).await
        {
            tracing::warn!(error = %e, "audit export ended early");
        }
    });
    let body = axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    }));
    Ok((
        [(axum::http::header::CONTENT_TYPE, p.format.content_type())],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Period {
    pub from_ms: Option<i64>,
    /// Exclusive.
    pub to_ms: Option<i64>,
    /// `occurred` (the default) or `received`.
    #[serde(default)]
    #[param(inline)]
    pub order: clinicdesk_protocol::export::ReportOrder,
}

/// Who accessed a patient's record in a period, each access with its inclusion proof.
#[utoipa::path(get, path = "/v1/audit/patients/{patient_id}/report",
    params(("patient_id" = Uuid, Path), Period),
    responses((status = 200, body = clinicdesk_protocol::export::PatientAccessReport),
        (status = 400, body = ApiError)),
    security(("session" = [])))]
pub async fn patient_report(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
    Params(Period {
        from_ms,
        to_ms,
        order,
    }): Params<Period>,
) -> Result<Json<clinicdesk_protocol::export::PatientAccessReport>, ServerError> {
    Ok(Json(
        crate::audit::report::patient_access_report(
            &state,
            auth.scope(),
            patient_id,
            from_ms,
            to_ms,
            order,
        )
        .await?,
    ))
}
