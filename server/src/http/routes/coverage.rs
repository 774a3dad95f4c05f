//! A patient's insurance coverages: add one, list them, correct one (`If-Match`), read its
//! history; the day's patients with their coverages (billing's list). Each cut to the caller's field policy; each change recorded with its audit event
//! in its transaction.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{
    CoverageChange, CoverageFields, CoverageHistory, CoverageList, DayPatients, RecordHistory,
    RecordWritten,
};
use uuid::Uuid;

use crate::audit::access::{Seen, Served};
use crate::clinical::{coverage, day_patients};
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, ChangeId, Id, IfMatch, Params, written};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/patients/{patient_id}/coverages",
    params(("patient_id" = Uuid, Path), ("Idempotency-Key" = Option<uuid::Uuid>, Header, description = "The change's id (a UUID): sent again, it is answered with what it stored")), request_body = CoverageChange,
    responses((status = 201, body = RecordWritten, headers(("ETag" = String))),
        (status = 400, body = ApiError, description = "A field is missing or malformed (named)"),
        (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn add(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    change_id: ChangeId,
    Id(patient_id): Id<Uuid>,
    Body(change): Body<CoverageChange>,
) -> Result<impl IntoResponse, ServerError> {
    let w = coverage::add(
        &state,
        auth.scope(),
        auth.writer(seen, change_id),
        patient_id,
        change,
    )
    .await?;
    Ok((StatusCode::CREATED, written(w)))
}

#[utoipa::path(get, path = "/v1/patients/{patient_id}/coverages",
    params(("patient_id" = Uuid, Path)),
    responses((status = 200, body = CoverageList), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
) -> Result<Served<CoverageList>, ServerError> {
    let list = coverage::list(&state.store, auth.scope(), &auth.principal.user, patient_id).await?;
    Ok(Served::new(list))
}

#[utoipa::path(patch, path = "/v1/coverages/{coverage_id}",
    params(("coverage_id" = Uuid, Path),
        ("If-Match" = String, Header, pattern = r#"^"[0-9]{1,19}"$"#, description = "The version the change is based on, quoted"),
        ("Idempotency-Key" = Option<uuid::Uuid>, Header, description = "The change's id (a UUID): sent again, it is answered with what it stored")),
    request_body = CoverageChange,
    responses((status = 200, body = RecordWritten, headers(("ETag" = String))),
        (status = 400, body = ApiError), (status = 403, body = ApiError),
        (status = 404, body = ApiError),
        (status = 409, body = ApiError, description = "`conflict`: changed since; `current_version` and `fields`")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn change(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    change_id: ChangeId,
    Id(id): Id<Uuid>,
    IfMatch(based_on): IfMatch,
    Body(change): Body<CoverageChange>,
) -> Result<impl IntoResponse, ServerError> {
    let w = coverage::change(
        &state,
        auth.scope(),
        auth.writer(seen, change_id),
        id,
        based_on,
        change,
    )
    .await?;
    Ok(written(w))
}

#[utoipa::path(get, path = "/v1/coverages/{coverage_id}/history",
    params(("coverage_id" = Uuid, Path)),
    responses((status = 200, body = RecordHistory<CoverageFields>), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn history(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(id): Id<Uuid>,
) -> Result<Served<CoverageHistory>, ServerError> {
    let history = coverage::history(&state.store, auth.scope(), &auth.principal.user, id).await?;
    Ok(Served::new(history))
}

#[utoipa::path(get, path = "/v1/day/patients", params(crate::http::routes::schedule::DayQuery),
    responses((status = 200, body = DayPatients, description = "The patients booked that day \
            (not cancelled or entered in error), each with their coverages, cut to the caller's \
            field policy; no appointment detail"),
        (status = 400, body = ApiError), (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn day_patients(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(query): Params<crate::http::routes::schedule::DayQuery>,
) -> Result<Served<DayPatients>, ServerError> {
    let list = day_patients::day_patients(
        &state,
        auth.scope(),
        &auth.principal.user,
        query.date.as_deref(),
        state.clock.now_ms(),
    )
    .await?;
    Ok(Served::new(list))
}
