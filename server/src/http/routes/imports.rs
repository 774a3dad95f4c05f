//! An admin's import of the clinic's patients from its old system, and its progress.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::ImportJob;
use uuid::Uuid;

use crate::admin::import;
use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::Id;
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/imports",
    request_body(content = String, content_type = "text/plain",
        description = "The `Patient` lines of a FHIR R4 Bulk Data export (NDJSON, one resource \
            per line; `application/fhir+ndjson` is taken too), up to the request size limit: \
            send a bigger export in parts. Importing a source record again changes nothing."),
    responses((status = 202, body = ImportJob, description = "Started; follow it at /v1/imports/{id}"),
        (status = 400, body = ApiError, description = "The body is not UTF-8 text"),
        (status = 403, body = ApiError), (status = 413, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn start(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ImportJob>), ServerError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServerError::PayloadTooLarge
        } else {
            ServerError::BadRequest { field: "body" }
        }
    })?;
    let text = std::str::from_utf8(&body).map_err(|_| ServerError::BadRequest { field: "body" })?;
    let job = import::start(
        &state,
        auth.scope(),
        &auth.principal.user,
        seen.for_session(auth.principal.device_id),
        text,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

#[utoipa::path(get, path = "/v1/imports/{import_id}",
    params(("import_id" = Uuid, Path)),
    responses((status = 200, body = ImportJob), (status = 403, body = ApiError),
        (status = 404, body = ApiError, description = "No such import in the clinic")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn progress(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(id): Id<Uuid>,
) -> Result<Json<ImportJob>, ServerError> {
    Ok(Json(import::job(&state, auth.scope(), id).await?))
}
