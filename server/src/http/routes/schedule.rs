//! A day's appointments for the caller's clinic, in its time zone.

use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::AppointmentList;

use crate::audit::access::Served;
use crate::clinical::schedule;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::Params;
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
