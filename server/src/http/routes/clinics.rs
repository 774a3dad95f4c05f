//! Self-serve onboarding for the operator: a new clinic with its first admin.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::wire::{ClinicProvisioned, NewClinic};

use crate::admin::provisioning;
use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::http::extract::Body;
use crate::session::OperatorCaller;
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/clinics", request_body = NewClinic,
    responses((status = 201, body = ClinicProvisioned, description = "Created"),
        (status = 200, body = ClinicProvisioned,
            description = "A retry with the same idempotency key: the same clinic, fresh codes"),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 409, body = ApiError, description = "The key was used for another request, or the admin has signed in")),
    security(("operator" = [])))]
#[tracing::instrument(skip_all, fields(token_id = %operator.token_id))]
pub async fn provision(
    State(state): State<AppState>,
    operator: OperatorCaller,
    seen: Seen,
    Body(new): Body<NewClinic>,
) -> Result<(StatusCode, Json<ClinicProvisioned>), ServerError> {
    let (done, created) = provisioning::provision(&state, &new, seen.without_session()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(done)))
}
