//! Login from an enrolled device: a server nonce signed by the device key, plus the
//! user's password. Unknown users and wrong passwords answer the same, after the same work.
//! A right password yields the second-factor step ([`crate::mfa`]), not a session. Also
//! logout, a signed-in user's password change (which ends all their sessions), and the
//! first sign-in of a user whose password someone else chose: their own password first.

use axum::Json;
use axum::extract::State;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::{FirstPassword, LoginStep};
use clinicdesk_protocol::wire::{
    ChallengeRequest, ChallengeResponse, LoginRequest, LoginResponse, PasswordChange, ProofKey,
    UserInfo, login_proof_bytes,
};
use ed25519_dalek::VerifyingKey;

use super::Body;
use crate::app::AppState;
use crate::audit::access::Seen;
use crate::audit::key::verify_strict_hex;
use crate::audit::server_chain::{self, security_event};
use crate::auth::{Authenticated, ClinicScope, live_device};
use crate::error::ServerError;
use crate::mfa::store::Purpose;
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
    let proof_key = match req.proof_key {
        ProofKey::Device => device.public_key,
        ProofKey::Recovery => {
            state
                .store
                .recovery_key(device.id)
                .await?
                .ok_or(ServerError::InvalidSignature {
                    field: "device_signature",
                })?
        }
    };
    let key = VerifyingKey::from_bytes(&proof_key)
        .map_err(|_| ServerError::Internal("stored device key invalid"))?;
    let proof = login_proof_bytes(&req.nonce, device.id, &req.username);
    if !verify_strict_hex(&key, &proof, &req.device_signature) {
        return Err(ServerError::InvalidSignature {
            field: "device_signature",
        });
    }

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
    let password_ok =
        passwords::verify_in_turn(req.password.expose().to_owned(), stored_hash).await?;
    // An expired first password answers exactly as a wrong one.
    let first_password_live =
        |c: &crate::store::Credentials| c.password_expires_at_ms.is_none_or(|at| now < at);
    let attempted = credentials.as_ref().map(|c| c.info.clone());
    let (user, must_change_password) = match credentials {
        Some(c) if password_ok && c.active && first_password_live(&c) => {
            (c.info, c.must_change_password)
        }
        _ => {
            let locked_out = throttle::fail(&state, &attempts).await?;
            if let Some(account) = &attempted {
                crate::audit::sign_in::record_failure(
                    &state, account, &seen, device.id, locked_out,
                );
            }
            return Err(ServerError::InvalidCredentials);
        }
    };
    if must_change_password {
        tracing::info!(user_id = %user.user_id, "first password accepted; own password next");
        return Ok(Json(
            crate::mfa::password_ticket(&state, &user, device.id).await?,
        ));
    }

    // A recovery login proves the second factor afresh: the grant lives in the cache the
    // keychain loss just closed, and the disk alone must not be enough.
    if let Some(grant) = req
        .mfa_grant
        .as_ref()
        .filter(|_| req.proof_key == ProofKey::Device)
        && crate::mfa::store::grant_valid(
            state.store.pool(),
            &hash_secret(grant.expose()),
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
        session_token: session_token.into(),
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
    let user = &auth.principal.user;
    // A stolen session must not become a way to guess the password.
    let attempts = [throttle::Key::account(user.clinic_id, &user.username)];
    throttle::check(&state, &attempts).await?;
    let current_ok = matches_stored(&state, user, req.current_password.expose()).await?;
    if !current_ok {
        let locked_out = throttle::fail(&state, &attempts).await?;
        crate::audit::sign_in::record_failure(
            &state,
            user,
            &seen,
            auth.principal.device_id,
            locked_out,
        );
        return Err(ServerError::InvalidCredentials);
    }
    if req.new_password == req.current_password {
        return Err(ServerError::WeakPassword);
    }
    let hash = new_password_hash(
        &state,
        user,
        req.new_password.expose().to_owned(),
        &[req.current_password.expose()],
    )
    .await?;
    let mut tx = state.store.pool().begin().await?;
    crate::users::set_password(
        &mut tx,
        auth.scope(),
        user.user_id,
        &hash,
        state.clock.now_ms(),
    )
    .await?;
    let event = security_event(
        user,
        AuditAction::PasswordChanged,
        "User",
        user.user_id.to_string(),
        "change_password",
        seen.for_session(auth.principal.device_id),
    );
    server_chain::record_in(&mut tx, &state, auth.scope(), vec![event]).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "password changed; sessions ended");
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
    let ticket = crate::mfa::live_ticket(&state, req.ticket.expose(), Purpose::Password).await?;
    let user = &ticket.user;
    if matches_stored(&state, user, req.new_password.expose()).await? {
        return Err(ServerError::WeakPassword);
    }
    let hash = new_password_hash(&state, user, req.new_password.expose().to_owned(), &[]).await?;
    let scope = ClinicScope::of_mfa_ticket(&ticket);
    let mut tx = state.store.pool().begin().await?;
    if !crate::mfa::store::consume_ticket(&mut tx, &ticket.hash).await? {
        return Err(ServerError::InvalidSecondFactor);
    }
    crate::users::set_password(&mut tx, &scope, user.user_id, &hash, state.clock.now_ms()).await?;
    let event = security_event(
        user,
        AuditAction::PasswordChanged,
        "User",
        user.user_id.to_string(),
        "first_password",
        seen.for_session(ticket.device_id),
    );
    server_chain::record_in(&mut tx, &state, &scope, vec![event]).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "first password replaced; second factor next");
    Ok(Json(
        crate::mfa::ticket_for(&state, user, ticket.device_id).await?,
    ))
}

/// Whether `password` is the user's stored one (argon2id, off the async threads).
async fn matches_stored(
    state: &AppState,
    user: &UserInfo,
    password: &str,
) -> Result<bool, ServerError> {
    let stored = state
        .store
        .credentials(user.clinic_id, &user.username)
        .await?
        .ok_or(ServerError::Unauthenticated)?
        .password_hash;
    passwords::verify_in_turn(password.to_owned(), stored).await
}

/// The argon2id hash of a new password, or `weak_password` when it is easy to guess for
/// this user (their names, their clinic's, anything in `also_avoid`).
async fn new_password_hash(
    state: &AppState,
    user: &UserInfo,
    new: String,
    also_avoid: &[&str],
) -> Result<String, ServerError> {
    let clinic_name = state
        .store
        .clinic_name(user.clinic_id)
        .await?
        .unwrap_or_default();
    let mut context = vec![
        user.username.as_str(),
        user.display_name.as_str(),
        clinic_name.as_str(),
    ];
    context.extend_from_slice(also_avoid);
    if !passwords::acceptable(&new, &context) {
        return Err(ServerError::WeakPassword);
    }
    passwords::hash_in_turn(new).await
}
