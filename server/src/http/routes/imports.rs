//! An admin's import of the clinic's records from its old system, its progress, and the
//! directory of the old system's practitioners it found.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{DirectoryLink, ImportJob, PractitionerDirectory, RecordWritten};
use uuid::Uuid;

use crate::admin::{directory, import};
use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, ChangeId, Id, IfMatch, written};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/imports",
    request_body(content = String, content_type = "text/plain",
        description = "The `Patient`, `Practitioner`, `Coverage` and `Appointment` lines of a \
            FHIR R4 Bulk Data export (NDJSON, one resource per line, in any order; \
            `application/fhir+ndjson` is taken too), up to the request size limit: send a \
            bigger export in parts. Importing a source record again changes nothing; an \
            appointment comes in once its practitioner's directory entry is linked to an \
            account."),
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

#[utoipa::path(get, path = "/v1/practitioner-directory",
    responses((status = 200, body = PractitionerDirectory), (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn directory(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<PractitionerDirectory>, ServerError> {
    Ok(Json(directory::list(&state, auth.scope()).await?))
}

#[utoipa::path(put, path = "/v1/practitioner-directory/{entry_id}",
    params(("entry_id" = Uuid, Path),
        ("If-Match" = String, Header, pattern = r#"^"[0-9]{1,19}"$"#, description = "The entry's version the link is based on, quoted")),
    request_body = DirectoryLink,
    responses((status = 200, body = RecordWritten, headers(("ETag" = String))),
        (status = 400, body = ApiError, description = "`user_id` is not an active clinician of the clinic"),
        (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "`conflict`: the entry changed since, \
            or `user_id` already stands for another entry")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn link(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(id): Id<Uuid>,
    IfMatch(based_on): IfMatch,
    Body(link): Body<DirectoryLink>,
) -> Result<impl IntoResponse, ServerError> {
    let by = auth.writer(seen, ChangeId(None));
    let w = directory::link(&state, auth.scope(), by, id, based_on, link).await?;
    Ok(written(w))
}
