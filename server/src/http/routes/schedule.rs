//! Today's appointments for the caller's clinic.

use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::AppointmentList;

use crate::audit::access::Served;
use crate::clinical::schedule;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/appointments",
    responses((status = 200, body = AppointmentList), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn today(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Served<AppointmentList>, ServerError> {
    let list = schedule::today(&state.store, auth.scope(), state.clock.now_ms()).await?;
    Ok(Served::new(list))
}
