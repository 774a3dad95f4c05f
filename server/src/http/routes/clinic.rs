//! The caller's own clinic: its settings for every workstation, and its admin's changes of
//! its time zone and of how many admins review a break-glass grant.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{ClinicSettings, ReviewersChange, TimeZoneChange};

use crate::admin::clinic;
use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::Body;
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/clinic",
    responses((status = 200, body = ClinicSettings), (status = 401, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_settings(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<ClinicSettings>, ServerError> {
    let settings = clinic::settings(&state.store, auth.scope(), state.clock.now_ms()).await?;
    Ok(Json(settings))
}

#[utoipa::path(post, path = "/v1/clinic/time-zone", request_body = TimeZoneChange,
    responses((status = 200, body = ClinicSettings),
        (status = 400, body = ApiError, description = "Not an IANA time zone name"),
        (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn set_time_zone(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Body(change): Body<TimeZoneChange>,
) -> Result<Json<ClinicSettings>, ServerError> {
    let settings = clinic::set_time_zone(
        &state,
        auth.scope(),
        &auth.principal.user,
        &change,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok(Json(settings))
}

#[utoipa::path(post, path = "/v1/clinic/break-glass-reviewers", request_body = ReviewersChange,
    responses((status = 200, body = ClinicSettings),
        (status = 400, body = ApiError, description = "Not 1 or 2"),
        (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn set_break_glass_reviewers(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Body(change): Body<ReviewersChange>,
) -> Result<Json<ClinicSettings>, ServerError> {
    let settings = clinic::set_break_glass_reviewers(
        &state,
        auth.scope(),
        &auth.principal.user,
        &change,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok(Json(settings))
}
