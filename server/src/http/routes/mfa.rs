//! The second step of a login ([`crate::sign_in::mfa`]): TOTP, recovery codes and WebAuthn, and
//! setting up a first factor; plus an admin's reset of a user's factors. Handlers only: each
//! parses, makes one call into `sign_in::mfa` and shapes the answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::mfa::{
    MfaCode, MfaEnrolled, MfaTicketRequest, TotpSetup, WebauthnChallenge, WebauthnResponse,
};
use clinicdesk_protocol::wire::LoginResponse;
use uuid::Uuid;

use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::http::authorize::Authenticated;
use crate::http::extract::{Body, Id};
use crate::sign_in::mfa;
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/auth/mfa/totp", request_body = MfaCode,
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn verify_totp(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<MfaCode>,
) -> Result<Json<LoginResponse>, ServerError> {
    Ok(Json(
        mfa::verify_totp(&state, &seen, req.ticket.expose(), req.code.expose()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/mfa/recovery", request_body = MfaCode,
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn verify_recovery_code(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<MfaCode>,
) -> Result<Json<LoginResponse>, ServerError> {
    Ok(Json(
        mfa::verify_recovery_code(&state, &seen, req.ticket.expose(), req.code.expose()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/mfa/webauthn/challenge", request_body = MfaTicketRequest,
    responses((status = 200, body = WebauthnChallenge), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn webauthn_challenge(
    State(state): State<AppState>,
    Body(req): Body<MfaTicketRequest>,
) -> Result<Json<WebauthnChallenge>, ServerError> {
    Ok(Json(
        mfa::webauthn_challenge(&state, req.ticket.expose()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/mfa/webauthn", request_body = WebauthnResponse,
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn verify_webauthn(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<WebauthnResponse>,
) -> Result<Json<LoginResponse>, ServerError> {
    Ok(Json(
        mfa::verify_webauthn(&state, &seen, req.ticket.expose(), req.credential).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/totp", request_body = MfaTicketRequest,
    responses((status = 200, body = TotpSetup), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn setup_totp(
    State(state): State<AppState>,
    Body(req): Body<MfaTicketRequest>,
) -> Result<Json<TotpSetup>, ServerError> {
    Ok(Json(mfa::setup_totp(&state, req.ticket.expose()).await?))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/totp/confirm", request_body = MfaCode,
    responses((status = 200, body = MfaEnrolled), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn confirm_totp(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<MfaCode>,
) -> Result<Json<MfaEnrolled>, ServerError> {
    Ok(Json(
        mfa::confirm_totp(&state, seen, req.ticket.expose(), req.code.expose()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/webauthn/challenge", request_body = MfaTicketRequest,
    responses((status = 200, body = WebauthnChallenge), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn setup_webauthn_challenge(
    State(state): State<AppState>,
    Body(req): Body<MfaTicketRequest>,
) -> Result<Json<WebauthnChallenge>, ServerError> {
    Ok(Json(
        mfa::setup_webauthn_challenge(&state, req.ticket.expose()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/webauthn", request_body = WebauthnResponse,
    responses((status = 200, body = MfaEnrolled), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn setup_webauthn(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<WebauthnResponse>,
) -> Result<Json<MfaEnrolled>, ServerError> {
    Ok(Json(
        mfa::setup_webauthn(&state, seen, req.ticket.expose(), req.credential).await?,
    ))
}

#[utoipa::path(post, path = "/v1/users/{user_id}/mfa/reset",
    params(("user_id" = Uuid, Path, description = "The user whose second factors to remove")),
    responses((status = 204), (status = 404, body = ApiError)),
    security(("session" = [])))]
#[tracing::instrument(skip_all, fields(%user_id))]
pub async fn reset(
    State(state): State<AppState>,
    auth: Authenticated,
    seen: Seen,
    Id(user_id): Id<Uuid>,
) -> Result<StatusCode, ServerError> {
    mfa::reset(&state, &auth.principal, auth.scope(), seen, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
