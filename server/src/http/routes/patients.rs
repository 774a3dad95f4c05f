//! One patient, reduced to the fields the caller's role may read: clinical content only
//! for a clinician of the patient's care team or under a break-glass grant.

use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::Patient;
use uuid::Uuid;

use crate::audit::access::Served;
use crate::clinical::break_glass;
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
    let now = state.clock.now_ms();
    let access = break_glass::clinical_access(
        &state.store,
        auth.scope(),
        &auth.principal.user,
        patient_id,
        now,
    )
    .await?;
    let mut patient = state
        .store
        .patient(auth.scope(), patient_id, access.reads_clinical())
        .await?
        .ok_or(ServerError::NotFound)?;
    patient.clinical_access = access.wire();
    let grant = access.into_grant();
    let flag = grant.as_ref().map(break_glass::flag);
    patient.break_glass = grant;
    Ok(Served::new(patient).under_break_glass(flag))
}
