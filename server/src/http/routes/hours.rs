//! Practitioners' working hours and their free slots.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{FreeSlots, WorkingHours, WorkingHoursChange};
use uuid::Uuid;

use crate::audit::access::Seen;
use crate::clinical::hours;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, Id, Params};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/practitioners/{practitioner_id}/working-hours",
    params(("practitioner_id" = Uuid, Path)),
    responses((status = 200, body = WorkingHours), (status = 403, body = ApiError),
        (status = 404, body = ApiError,
            description = "No active clinician of the clinic, or (to a clinician) another's")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_hours(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(id): Id<Uuid>,
) -> Result<Json<WorkingHours>, ServerError> {
    let user = &auth.principal.user;
    Ok(Json(
        hours::working_hours(&state, auth.scope(), user, id).await?,
    ))
}

#[utoipa::path(put, path = "/v1/practitioners/{practitioner_id}/working-hours",
    params(("practitioner_id" = Uuid, Path)), request_body = WorkingHoursChange,
    responses((status = 200, body = WorkingHours),
        (status = 400, body = ApiError, description = "A time, an end or the periods not usable"),
        (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn set_hours(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(id): Id<Uuid>,
    Body(change): Body<WorkingHoursChange>,
) -> Result<Json<WorkingHours>, ServerError> {
    let set = hours::set_working_hours(
        &state,
        auth.scope(),
        &auth.principal.user,
        id,
        change,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok(Json(set))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SlotQuery {
    /// The day, `YYYY-MM-DD` in the clinic's time zone; today there when absent.
    pub date: Option<String>,
    /// The appointment's length, 5 to 480 minutes; 30 when absent.
    pub duration_mins: Option<u32>,
}

#[utoipa::path(get, path = "/v1/practitioners/{practitioner_id}/free-slots",
    params(("practitioner_id" = Uuid, Path), SlotQuery),
    responses((status = 200, body = FreeSlots),
        (status = 400, body = ApiError, description = "`date` or `duration_mins` not usable"),
        (status = 403, body = ApiError), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn free_slots(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(id): Id<Uuid>,
    Params(query): Params<SlotQuery>,
) -> Result<Json<FreeSlots>, ServerError> {
    let slots = hours::free_slots(
        &state,
        auth.scope(),
        id,
        query.date.as_deref(),
        query.duration_mins,
    )
    .await?;
    Ok(Json(slots))
}
