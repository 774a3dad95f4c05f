//! The second step of a login ([`crate::mfa`]): TOTP, recovery codes and WebAuthn, and
//! setting up a first factor; plus an admin's reset of a user's factors. Setting up and
//! resetting are recorded on the clinic's server chain in the same transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clinicdesk_protocol::ApiError;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::{
    MfaCode, MfaEnrolled, MfaTicketRequest, TotpSetup, WebauthnChallenge, WebauthnResponse,
};
use clinicdesk_protocol::wire::LoginResponse;
use uuid::Uuid;

use super::{Body, Id};
use crate::app::AppState;
use crate::audit::access::Seen;
use crate::audit::server_chain::{self, security_event};
use crate::auth::{Authenticated, ClinicScope};
use crate::error::ServerError;
use crate::mfa::store::{self, Purpose, Ticket};
use crate::mfa::totp::TotpSecret;
use crate::mfa::webauthn::{credential_id, parse_passkeys};
use crate::mfa::{self, Proof, counted, live_ticket, recovery, refuse};

const TOTP_PENDING: &str = "totp:";

#[utoipa::path(post, path = "/v1/auth/mfa/totp", request_body = MfaCode,
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn verify_totp(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<MfaCode>,
) -> Result<Json<LoginResponse>, ServerError> {
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Verify).await?;
    let user_id = ticket.user.user_id;
    let Some((sealed, last_step)) = store::totp(state.store.pool(), user_id).await? else {
        return Err(refuse(&state, &ticket, &seen).await);
    };
    let secret = TotpSecret::from_bytes(state.seal.open(user_id, &sealed)?)?;
    let Some(step) = secret.check(req.code.expose(), state.clock.now_ms(), last_step)? else {
        return Err(refuse(&state, &ticket, &seen).await);
    };
    Ok(Json(
        mfa::sign_in_with(&state, &ticket, &seen, Proof::TotpStep(step)).await?,
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
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Verify).await?;
    let hash = recovery::hash_of(req.code.expose());
    let login = mfa::sign_in_with(&state, &ticket, &seen, Proof::RecoveryCode(&hash)).await?;
    tracing::info!(user_id = %ticket.user.user_id, "recovery code used");
    Ok(Json(login))
}

#[utoipa::path(post, path = "/v1/auth/mfa/webauthn/challenge", request_body = MfaTicketRequest,
    responses((status = 200, body = WebauthnChallenge), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn webauthn_challenge(
    State(state): State<AppState>,
    Body(req): Body<MfaTicketRequest>,
) -> Result<Json<WebauthnChallenge>, ServerError> {
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Verify).await?;
    let passkeys =
        parse_passkeys(&store::passkeys(state.store.pool(), ticket.user.user_id).await?)?;
    if passkeys.is_empty() {
        return Err(ServerError::InvalidSecondFactor);
    }
    let (options, pending) = state.relying_party.start_authentication(&passkeys)?;
    store::set_pending(state.store.pool(), &ticket.hash, &pending).await?;
    Ok(Json(WebauthnChallenge {
        options,
        origin: state.relying_party.origin(),
    }))
}

#[utoipa::path(post, path = "/v1/auth/mfa/webauthn", request_body = WebauthnResponse,
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn verify_webauthn(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<WebauthnResponse>,
) -> Result<Json<LoginResponse>, ServerError> {
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Verify).await?;
    let user_id = ticket.user.user_id;
    let passkeys = parse_passkeys(&store::passkeys(state.store.pool(), user_id).await?)?;
    let finished = state.relying_party.finish_authentication(
        ticket.pending.as_deref(),
        req.credential,
        passkeys,
    );
    let passkey = counted(&state, &ticket, &seen, finished).await?;
    let json =
        serde_json::to_string(&passkey).map_err(|_| ServerError::Internal("passkey encoding"))?;
    let proof = Proof::Passkey(credential_id(&passkey), json);
    Ok(Json(
        mfa::sign_in_with(&state, &ticket, &seen, proof).await?,
    ))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/totp", request_body = MfaTicketRequest,
    responses((status = 200, body = TotpSetup), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn setup_totp(
    State(state): State<AppState>,
    Body(req): Body<MfaTicketRequest>,
) -> Result<Json<TotpSetup>, ServerError> {
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Setup).await?;
    let clinic_name = state
        .store
        .clinic_name(ticket.user.clinic_id)
        .await?
        .unwrap_or_default();
    let secret = TotpSecret::generate()?;
    let setup = secret.setup(&ticket.user.username, &clinic_name)?;
    let sealed = state.seal.seal(ticket.user.user_id, secret.as_bytes())?;
    store::set_pending(
        state.store.pool(),
        &ticket.hash,
        &format!("{TOTP_PENDING}{sealed}"),
    )
    .await?;
    Ok(Json(setup))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/totp/confirm", request_body = MfaCode,
    responses((status = 200, body = MfaEnrolled), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn confirm_totp(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<MfaCode>,
) -> Result<Json<MfaEnrolled>, ServerError> {
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Setup).await?;
    let Some(sealed) = ticket
        .pending
        .as_deref()
        .and_then(|p| p.strip_prefix(TOTP_PENDING))
    else {
        return Err(ServerError::InvalidSecondFactor);
    };
    let secret = TotpSecret::from_bytes(state.seal.open(ticket.user.user_id, sealed)?)?;
    let now = state.clock.now_ms();
    let Some(step) = secret.check(req.code.expose(), now, 0)? else {
        return Err(refuse(&state, &ticket, &seen).await);
    };
    let mut tx = state.store.pool().begin().await?;
    store::insert_totp(&mut tx, &ticket.user, sealed, step, now).await?;
    let (codes, grant) =
        first_factor_stored(&mut tx, &state, &ticket, seen, "confirm_totp").await?;
    tx.commit().await?;
    tracing::info!(user_id = %ticket.user.user_id, "TOTP set up");
    Ok(Json(mfa::enrolled(&state, &ticket, grant, codes).await?))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/webauthn/challenge", request_body = MfaTicketRequest,
    responses((status = 200, body = WebauthnChallenge), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn setup_webauthn_challenge(
    State(state): State<AppState>,
    Body(req): Body<MfaTicketRequest>,
) -> Result<Json<WebauthnChallenge>, ServerError> {
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Setup).await?;
    let (options, pending) = state.relying_party.start_registration(&ticket.user, &[])?;
    store::set_pending(state.store.pool(), &ticket.hash, &pending).await?;
    Ok(Json(WebauthnChallenge {
        options,
        origin: state.relying_party.origin(),
    }))
}

#[utoipa::path(post, path = "/v1/auth/mfa/setup/webauthn", request_body = WebauthnResponse,
    responses((status = 200, body = MfaEnrolled), (status = 401, body = ApiError)))]
#[tracing::instrument(skip_all)]
pub async fn setup_webauthn(
    State(state): State<AppState>,
    seen: Seen,
    Body(req): Body<WebauthnResponse>,
) -> Result<Json<MfaEnrolled>, ServerError> {
    let ticket = live_ticket(&state, req.ticket.expose(), Purpose::Setup).await?;
    let finished = state
        .relying_party
        .finish_registration(ticket.pending.as_deref(), req.credential);
    let passkey = counted(&state, &ticket, &seen, finished).await?;
    let json =
        serde_json::to_string(&passkey).map_err(|_| ServerError::Internal("passkey encoding"))?;
    let mut tx = state.store.pool().begin().await?;
    store::insert_passkey(
        &mut tx,
        &ticket.user,
        &credential_id(&passkey),
        &json,
        state.clock.now_ms(),
    )
    .await?;
    let (codes, grant) =
        first_factor_stored(&mut tx, &state, &ticket, seen, "setup_webauthn").await?;
    tx.commit().await?;
    tracing::info!(user_id = %ticket.user.user_id, "WebAuthn credential set up");
    Ok(Json(mfa::enrolled(&state, &ticket, grant, codes).await?))
}

/// After the first factor's row, in its transaction: new recovery codes, the
/// `mfa_enrolled` event, and the ticket redeemed. Returns the codes and the grant.
async fn first_factor_stored(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    ticket: &Ticket,
    seen: Seen,
    route: &str,
) -> Result<(Vec<String>, String), ServerError> {
    let (codes, hashes) = recovery::generate()?;
    store::replace_recovery_codes(&mut *tx, &ticket.user, &hashes).await?;
    let event = security_event(
        &ticket.user,
        AuditAction::MfaEnrolled,
        "User",
        ticket.user.user_id.to_string(),
        route,
        seen.for_session(ticket.device_id),
    );
    server_chain::record_in(
        &mut *tx,
        state,
        &ClinicScope::of_mfa_ticket(ticket),
        vec![event],
    )
    .await?;
    let grant = mfa::redeem(&mut *tx, state, ticket).await?;
    Ok((codes, grant))
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
    let admin = &auth.principal.user;
    if user_id == admin.user_id {
        // Another admin resets yours: one person cannot strip their own second factor.
        return Err(ServerError::Forbidden);
    }
    if !state.store.is_clinic_user(auth.scope(), user_id).await? {
        return Err(ServerError::NotFound);
    }
    let mut tx = state.store.pool().begin().await?;
    store::reset(&mut tx, user_id, state.clock.now_ms()).await?;
    let event = security_event(
        admin,
        AuditAction::MfaReset,
        "User",
        user_id.to_string(),
        "mfa_reset",
        seen.for_session(auth.principal.device_id),
    );
    server_chain::record_in(&mut tx, &state, auth.scope(), vec![event]).await?;
    tx.commit().await?;
    tracing::info!(by = %admin.user_id, "second factors reset");
    Ok(StatusCode::NO_CONTENT)
}
