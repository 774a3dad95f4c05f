//! One patient, reduced to the fields the caller's role may read.

use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::policy::{self, Permission};
use clinicdesk_protocol::wire::Patient;
use uuid::Uuid;

use super::Id;
use crate::app::AppState;
use crate::audit::access::Served;
use crate::auth::Authenticated;
use crate::error::ServerError;

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
    let clinical = policy::allows(auth.principal.user.role, Permission::ReadClinical);
    let patient = state
        .store
        .patient(auth.scope(), patient_id, clinical)
        .await?
        .ok_or(ServerError::NotFound)?;
    Ok(Served(patient))
}
