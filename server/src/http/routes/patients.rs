//! One patient, reduced to the fields the caller's role may read: clinical content only
//! for a clinician of the patient's care team or under a break-glass grant.

use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::Patient;
use uuid::Uuid;

use crate::audit::access::Served;
use crate::clinical::patients;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::Id;
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/patients/{patient_id}",
    params(("patient_id" = Uuid, Path)),
    responses((status = 200, body = Patient), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_patient(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
) -> Result<Served<Patient>, ServerError> {
    let (patient, flag) = patients::chart(
        &state.store,
        auth.scope(),
        &auth.principal.user,
        patient_id,
        state.clock.now_ms(),
    )
    .await?;
    Ok(Served::new(patient).under_break_glass(flag))
}
