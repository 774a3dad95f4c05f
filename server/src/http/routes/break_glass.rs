//! Break-glass: a clinician opens an hour's access to a chart outside their care team;
//! admins work through the queue of grants and acknowledge each with a note.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{
    BreakGlassGrant, BreakGlassQueue, BreakGlassRequest, ReviewRequest,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::access::Seen;
use crate::clinical::break_glass::{self, QueueFilter};
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, Id, Params};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/patients/{patient_id}/break-glass",
    params(("patient_id" = Uuid, Path)), request_body = BreakGlassRequest,
    responses((status = 201, body = BreakGlassGrant), (status = 400, body = ApiError),
        (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn open(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(patient_id): Id<Uuid>,
    Body(request): Body<BreakGlassRequest>,
) -> Result<(StatusCode, Json<BreakGlassGrant>), ServerError> {
    let grant = break_glass::open(
        &state,
        auth.scope(),
        &auth.principal.user,
        patient_id,
        request,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Only grants no admin has acknowledged yet.
    #[serde(default)]
    pub pending: bool,
}

#[utoipa::path(get, path = "/v1/break-glass", params(QueueQuery),
    responses((status = 200, body = BreakGlassQueue), (status = 400, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn queue(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(query): Params<QueueQuery>,
) -> Result<Json<BreakGlassQueue>, ServerError> {
    let filter = if query.pending {
        QueueFilter::Pending
    } else {
        QueueFilter::All
    };
    Ok(Json(BreakGlassQueue {
        grants: break_glass::queue(&state.store, auth.scope(), filter).await?,
    }))
}

#[utoipa::path(post, path = "/v1/break-glass/{grant_id}/review",
    params(("grant_id" = Uuid, Path)), request_body = ReviewRequest,
    responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(%grant_id))]
pub async fn review(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(grant_id): Id<Uuid>,
    Body(request): Body<ReviewRequest>,
) -> Result<StatusCode, ServerError> {
    break_glass::review(
        &state,
        auth.scope(),
        &auth.principal.user,
        grant_id,
        &request.note,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
