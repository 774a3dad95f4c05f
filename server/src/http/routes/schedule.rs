//! A day's appointments for the caller's clinic, in its time zone.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{
    AppointmentFields, AppointmentHistory, AppointmentList, AppointmentRecord, AppointmentUpdate,
    NewAppointment, PractitionerList, RecordHistory, RecordWritten, SyncPage,
};
use uuid::Uuid;

use crate::audit::access::{Seen, Served};
use crate::clinical::{booking, schedule, sync_patients};
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, ChangeId, Id, IfMatch, Params, etag, written};
use crate::state::AppState;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DayQuery {
    /// The day, `YYYY-MM-DD` in the clinic's time zone; today there when absent.
    pub date: Option<String>,
}

#[utoipa::path(get, path = "/v1/appointments", params(DayQuery),
    responses((status = 200, body = AppointmentList), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn today(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(query): Params<DayQuery>,
) -> Result<Served<AppointmentList>, ServerError> {
    let list = schedule::day(
        &state.store,
        auth.scope(),
        query.date.as_deref(),
        state.clock.now_ms(),
    )
    .await?;
    Ok(Served::new(list))
}

#[utoipa::path(post, path = "/v1/appointments", request_body = NewAppointment, params(("Idempotency-Key" = Option<uuid::Uuid>, Header, description = "The change's id (a UUID): sent again, it is answered with what it stored")),
    responses((status = 201, body = RecordWritten, headers(("ETag" = String))),
        (status = 400, body = ApiError, description = "A field is missing or malformed (named)"),
        (status = 403, body = ApiError, description = "The role may not write the named field"),
        (status = 409, body = ApiError, description = "`conflict` on `start`: the practitioner is booked then")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn book(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    change_id: ChangeId,
    Body(new): Body<NewAppointment>,
) -> Result<impl IntoResponse, ServerError> {
    let w = booking::book(&state, auth.scope(), auth.writer(seen, change_id), new).await?;
    Ok((StatusCode::CREATED, written(w)))
}

#[utoipa::path(patch, path = "/v1/appointments/{appointment_id}",
    params(("appointment_id" = Uuid, Path),
        ("If-Match" = String, Header, pattern = r#"^"[0-9]{1,19}"$"#, description = "The version the change is based on, quoted"),
        ("Idempotency-Key" = Option<uuid::Uuid>, Header, description = "The change's id (a UUID): sent again, it is answered with what it stored")),
    request_body = AppointmentUpdate,
    responses((status = 200, body = RecordWritten, headers(("ETag" = String))),
        (status = 400, body = ApiError, description = "A malformed field, or a status it cannot move to"),
        (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError,
            description = "`conflict`: changed since (`current_version`, `fields`), or the new time is booked")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn change(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    change_id: ChangeId,
    Id(id): Id<Uuid>,
    IfMatch(based_on): IfMatch,
    Body(update): Body<AppointmentUpdate>,
) -> Result<impl IntoResponse, ServerError> {
    let w = booking::change(
        &state,
        auth.scope(),
        auth.writer(seen, change_id),
        id,
        based_on,
        update,
    )
    .await?;
    Ok(written(w))
}

#[utoipa::path(get, path = "/v1/appointments/{appointment_id}",
    params(("appointment_id" = Uuid, Path)),
    responses((status = 200, body = AppointmentRecord, headers(("ETag" = String))),
        (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_appointment(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(id): Id<Uuid>,
) -> Result<impl IntoResponse, ServerError> {
    let record = booking::record(&state.store, auth.scope(), &auth.principal.user, id).await?;
    Ok(([etag(record.version)], Served::new(record)))
}

#[utoipa::path(get, path = "/v1/appointments/{appointment_id}/history",
    params(("appointment_id" = Uuid, Path)),
    responses((status = 200, body = RecordHistory<AppointmentFields>), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_history(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(id): Id<Uuid>,
) -> Result<Served<AppointmentHistory>, ServerError> {
    let history = booking::history(&state.store, auth.scope(), &auth.principal.user, id).await?;
    Ok(Served::new(history))
}

#[utoipa::path(get, path = "/v1/practitioners",
    responses((status = 200, body = PractitionerList), (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn practitioners(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<axum::Json<PractitionerList>, ServerError> {
    let list = booking::practitioners(&state.store, auth.scope()).await?;
    Ok(axum::Json(list))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// The window's first day, `YYYY-MM-DD` in the clinic's time zone; yesterday when absent.
    pub from: Option<String>,
    /// Its last day (at most 30 after `from`); a week from today when absent.
    pub to: Option<String>,
    /// The cursor: the `next` of the page before.
    pub after: Option<Uuid>,
    /// Patients per page, 1 to 200 (200 when absent).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/sync/patients", params(SyncQuery),
    responses((status = 200, body = SyncPage, description = "The patients booked in the window \
            (a clinician's own appointments only), by id after the cursor, each with their \
            chart, record and coverages as the caller may read them"),
        (status = 400, body = ApiError, description = "A malformed day, a window backwards \
            or longer than 31 days, or a limit out of range (named)"),
        (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn sync_patients(
    State(state): State<AppState>,
    auth: Authenticated,
    Params(query): Params<SyncQuery>,
) -> Result<Served<SyncPage>, ServerError> {
    let request = sync_patients::PageRequest {
        from: query.from.as_deref(),
        to: query.to.as_deref(),
        after: query.after,
        limit: query.limit,
    };
    let page = sync_patients::page(
        &state,
        auth.scope(),
        &auth.principal.user,
        &request,
        state.clock.now_ms(),
    )
    .await?;
    Ok(Served::new(page))
}
