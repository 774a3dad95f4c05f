//! Today's appointments for the caller's clinic.

use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::AppointmentList;

use crate::audit::access::Served;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::state::AppState;
use crate::time::rfc3339;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[utoipa::path(get, path = "/v1/appointments",
    responses((status = 200, body = AppointmentList), (status = 401, body = ApiError), (status = 403, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn today(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Served<AppointmentList>, ServerError> {
    let now = state.clock.now_ms();
    let day_start = now - now.rem_euclid(DAY_MS);
    let rows = state
        .store
        .appointments(auth.scope(), day_start, day_start + DAY_MS)
        .await?;
    let appointments = rows
        .into_iter()
        .map(|(mut a, starts_at_ms)| {
            a.starts_at = rfc3339(starts_at_ms)?;
            Ok(a)
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    let date = rfc3339(day_start)?.get(..10).unwrap_or_default().to_owned();
    Ok(Served::new(AppointmentList { date, appointments }))
}
