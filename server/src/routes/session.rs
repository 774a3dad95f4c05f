//! Login from an enrolled device: a server nonce signed by the device key, plus the
//! user's password. Unknown users and wrong passwords answer the same, after the same work.
//! A right password yields the second-factor step ([`crate::mfa`]), not a session.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::from_hex;
use clinicdesk_protocol::mfa::LoginStep;
use clinicdesk_protocol::wire::{
    ChallengeRequest, ChallengeResponse, LoginRequest, LoginResponse, UserInfo, login_proof_bytes,
};
use ed25519_dalek::{Signature, VerifyingKey};

use super::Body;
use crate::app::AppState;
use crate::audit::access::Seen;
use crate::auth::{Authenticated, live_device};
use crate::error::ServerError;
use crate::passwords;
use crate::random::{hash_secret, token};
use crate::throttle;

const NONCE_TTL_MS: i64 = 2 * 60 * 1000;

#[utoipa::path(post, path = "/v1/auth/challenge", request_body = ChallengeRequest,
    responses((status = 200, body = ChallengeResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn challenge(
    State(state): State<AppState>,
    Body(req): Body<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ServerError> {
    let device = live_device(&state, req.device_id).await?;
    let nonce = token()?;
    let expires = state.clock.now_ms() + NONCE_TTL_MS;
    state.store.insert_nonce(&nonce, device.id, expires).await?;
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
    let device = live_device(&state, req.device_id).await?;
    let now = state.clock.now_ms();
    if !state.store.take_nonce(&req.nonce, device.id, now).await? {
        return Err(ServerError::InvalidSignature { field: "nonce" });
    }
    let signature = from_hex(&req.device_signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .ok_or(ServerError::InvalidSignature {
            field: "device_signature",
        })?;
    let key = VerifyingKey::from_bytes(&device.public_key)
        .map_err(|_| ServerError::Internal("stored device key invalid"))?;
    key.verify_strict(
        &login_proof_bytes(&req.nonce, device.id, &req.username),
        &signature,
    )
    .map_err(|_| ServerError::InvalidSignature {
        field: "device_signature",
    })?;

    let attempts = [
        throttle::Key::account(device.clinic_id, &req.username),
        throttle::Key::address(&seen.client_ip),
    ];
    throttle::check(&state, &attempts).await?;
    let app_version = req
        .app_version
        .as_deref()
        .map(crate::device_registry::valid_app_version)
        .transpose()?;
    crate::device_registry::seen(&state.store, device.id, now, app_version).await?;
    let credentials = state
        .store
        .credentials(device.clinic_id, &req.username)
        .await?;
    let stored_hash = credentials
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| passwords::dummy_hash().to_owned());
    let password = req.password;
    let password_ok =
        tokio::task::spawn_blocking(move || passwords::verify(&password, &stored_hash))
            .await
            .map_err(|_| ServerError::Internal("password check task"))??;
    let user = match credentials {
        Some(c) if password_ok && c.active => c.info,
        _ => {
            throttle::fail(&state, &attempts).await?;
            return Err(ServerError::InvalidCredentials);
        }
    };

    if let Some(grant) = &req.mfa_grant
        && crate::mfa::store::grant_valid(
            state.store.pool(),
            &hash_secret(grant),
            user.user_id,
            device.id,
            now,
        )
        .await?
    {
        tracing::info!(user_id = %user.user_id, "login within a second-factor grant");
        return Ok(Json(LoginStep::SignedIn(
            issue_session(&state, &user, device.id).await?,
        )));
    }
    tracing::info!(user_id = %user.user_id, "password accepted; second factor next");
    Ok(Json(
        crate::mfa::ticket_for(&state, &user, device.id).await?,
    ))
}

/// A new session for a user who proved every factor, under the clinic's lock policy. The
/// user's sessions beyond the newest two are revoked.
pub(crate) async fn issue_session(
    state: &AppState,
    user: &UserInfo,
    device_id: uuid::Uuid,
) -> Result<LoginResponse, ServerError> {
    let session_token = token()?;
    state
        .store
        .insert_session(
            &hash_secret(&session_token),
            user,
            device_id,
            state.clock.now_ms(),
        )
        .await?;
    let (idle_timeout_secs, max_offline_secs) = state.store.lock_policy(user.clinic_id).await?;
    throttle::clear(
        state,
        &throttle::Key::account(user.clinic_id, &user.username),
    )
    .await?;
    tracing::info!(user_id = %user.user_id, "session issued");
    Ok(LoginResponse {
        session_token,
        user: user.clone(),
        idle_timeout_secs,
        max_offline_secs,
        mfa_grant: None,
    })
}

#[utoipa::path(post, path = "/v1/auth/logout", responses((status = 204)))]
#[tracing::instrument(skip_all)]
pub async fn logout(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<axum::http::StatusCode, ServerError> {
    state
        .store
        .revoke_session(&auth.principal.token_hash, state.clock.now_ms())
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
