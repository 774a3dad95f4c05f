//! A patient's care team, for the front desk: who is on it, add a clinician, take one off.

use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{CareTeam, CareTeamAddition};
use uuid::Uuid;

use crate::audit::access::{Seen, Served};
use crate::clinical::care_team;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, Id};
use crate::state::AppState;

#[utoipa::path(get, path = "/v1/patients/{patient_id}/care-team",
    params(("patient_id" = Uuid, Path)),
    responses((status = 200, body = CareTeam), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn get_team(
    State(state): State<AppState>,
    auth: Authenticated,
    Id(patient_id): Id<Uuid>,
) -> Result<Served<CareTeam>, ServerError> {
    let team = care_team::team(&state.store, auth.scope(), patient_id).await?;
    Ok(Served::new(team))
}

#[utoipa::path(post, path = "/v1/patients/{patient_id}/care-team",
    params(("patient_id" = Uuid, Path)), request_body = CareTeamAddition,
    responses((status = 204, description = "On the team (already was, or now is)"),
        (status = 400, body = ApiError, description = "Not an active clinician of the clinic"),
        (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn add(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(patient_id): Id<Uuid>,
    Body(addition): Body<CareTeamAddition>,
) -> Result<StatusCode, ServerError> {
    care_team::add(
        &state,
        auth.scope(),
        &auth.principal.user,
        patient_id,
        addition.clinician_id,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/patients/{patient_id}/care-team/{user_id}/remove",
    params(("patient_id" = Uuid, Path), ("user_id" = Uuid, Path, description = "The clinician")),
    responses((status = 204), (status = 404, body = ApiError,
        description = "No such patient, or the clinician is not on the team")),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %auth.principal.user.user_id))]
pub async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id((patient_id, clinician_id)): Id<(Uuid, Uuid)>,
) -> Result<StatusCode, ServerError> {
    care_team::remove(
        &state,
        auth.scope(),
        &auth.principal.user,
        patient_id,
        clinician_id,
        seen.for_session(auth.principal.device_id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
