//! Login from an enrolled device (the nonce, then the password step), logout, a signed-in
//! user's password change, and a first password's replacement. Handlers only: the steps
//! are [`crate::sign_in::password`], and a right password yields the second-factor step
//! ([`crate::sign_in::mfa`]), not a session.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::mfa::{FirstPassword, LoginStep};
use clinicdesk_protocol::wire::{
    ChallengeRequest, ChallengeResponse, LoginRequest, PasswordChange,
};

use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::Body;
use crate::sign_in::password;
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/auth/challenge", request_body = ChallengeRequest,
    responses((status = 200, body = ChallengeResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn challenge(
    State(state): State<AppState>,
    Body(req): Body<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ServerError> {
    let nonce = password::challenge(&state, req.device_id).await?;
    Ok(Json(ChallengeResponse { nonce }))
}

#[utoipa::path(post, path = "/v1/auth/login", request_body = LoginRequest,
    responses((status = 200, body = LoginStep), (status = 401, body = ApiError),
        (status = 429, body = ApiError, description = "Too many failed attempts; see Retry-After")))]
#[tracing::instrument(skip_all, fields(device_id = %req.device_id))]
pub async fn login(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginStep>, ServerError> {
    Ok(Json(password::log_in(&state, &seen, req).await?))
}

#[utoipa::path(post, path = "/v1/auth/logout", responses((status = 204)))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<axum::http::StatusCode, ServerError> {
    crate::session::log_out(&state, &auth.principal).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/auth/password", request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 429, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn change_password(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Body(req): Body<PasswordChange>,
) -> Result<axum::http::StatusCode, ServerError> {
    password::change(&state, &auth.principal, auth.scope(), seen, req).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/auth/password/first", request_body = FirstPassword,
    responses((status = 200, body = LoginStep, description = "The second-factor step"),
        (status = 400, body = ApiError), (status = 401, body = ApiError),
        (status = 429, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn first_password(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<FirstPassword>,
) -> Result<Json<LoginStep>, ServerError> {
    Ok(Json(password::choose_first(&state, seen, req).await?))
}
