//! The password step of a login from an enrolled device: a server nonce signed by the
//! device key, plus the user's password. Unknown users and wrong passwords answer the same,
//! after the same work. A right password yields the second-factor step ([`super::mfa`]),
//! not a session. Also a signed-in user's password change (which ends all their sessions),
//! and the first sign-in of a user whose password someone else chose: their own password
//! first.

use clinicdesk_protocol::audit::{AuditAction, RequestSeen};
use clinicdesk_protocol::mfa::{FirstPassword, LoginStep};
use clinicdesk_protocol::wire::{
    LoginRequest, PasswordChange, ProofKey, UserInfo, login_proof_bytes,
};
use ed25519_dalek::VerifyingKey;
use uuid::Uuid;

use crate::audit::access::Seen;
use crate::audit::key::verify_strict_hex;
use crate::audit::server_chain::{self, security_event};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Principal};
use crate::secrets::passwords;
use crate::secrets::random::{hash_secret, token};
use crate::session::live_device;
use crate::sign_in::mfa::{self, Purpose};
use crate::sign_in::session::issue_session;
use crate::sign_in::throttle;
use crate::state::AppState;
use crate::store::ClinicTx;
use crate::store::mfa::consume_ticket;

const NONCE_TTL_MS: i64 = 2 * 60 * 1000;

/// Most live nonces one device holds: the app asks for one and signs with it at once, so
/// more only come from someone calling the public route in a loop.
pub const MAX_LIVE_NONCES: usize = 8;

/// A nonce for the live device `device_id` to sign into its login.
pub async fn challenge(state: &AppState, device_id: Uuid) -> Result<String, ServerError> {
    let device = live_device(state, device_id).await?;
    let nonce = token()?;
    let now = state.clock.now_ms();
    state
        .store
        .insert_nonce(&nonce, device.id, now + NONCE_TTL_MS, now, MAX_LIVE_NONCES)
        .await?;
    Ok(nonce)
}

/// The password step: the device's signature over its nonce, then the password (throttled
/// per account and per address). Answers the next step: a new password, a second factor,
/// or a session at once when the request carries a live grant of this user on this device.
pub async fn log_in(
    state: &AppState,
    seen: &Seen,
    req: LoginRequest,
) -> Result<LoginStep, ServerError> {
    let device = live_device(state, req.device_id).await?;
    let now = state.clock.now_ms();
    if !state.store.take_nonce(&req.nonce, device.id, now).await? {
        return Err(ServerError::InvalidSignature { field: "nonce" });
    }
    let recovery = req.proof_key == ProofKey::Recovery;
    let proof_key = match req.proof_key {
        ProofKey::Device => device.public_key,
        ProofKey::Recovery => state
            .store
            .recovery_key(&ClinicScope::of_workstation(&device), device.id)
            .await?
            .ok_or(ServerError::InvalidSignature {
                field: "device_signature",
            })?,
    };
    let key = VerifyingKey::from_bytes(&proof_key)
        .map_err(|_| ServerError::Internal("stored device key invalid"))?;
    let proof = login_proof_bytes(&req.nonce, device.id, &req.username);
    if !verify_strict_hex(&key, &proof, &req.device_signature) {
        return Err(ServerError::InvalidSignature {
            field: "device_signature",
        });
    }

    let app_version = req
        .app_version
        .as_deref()
        .map(crate::devices::registry::valid_app_version)
        .transpose()?;
    let attempts = [
        throttle::Key::account(device.clinic_id, &req.username),
        throttle::Key::address(&seen.client_ip),
    ];
    // Counted before the password is checked, so that concurrent guesses cannot all pass.
    let attempt = throttle::reserve(state, &attempts).await?;
    crate::devices::registry::seen(&state.store, device.id, now, app_version).await?;
    let credentials = state
        .store
        .credentials(device.clinic_id, &req.username)
        .await?;
    let stored_hash = credentials
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| passwords::dummy_hash().to_owned());
    // No password is longer than a new one may be: an overlong one is wrong, unhashed.
    let password_ok = req.password.expose().chars().count() <= passwords::MAX_LENGTH
        && passwords::verify_in_turn(req.password.expose().to_owned(), stored_hash).await?;
    // An expired first password answers exactly as a wrong one.
    let first_password_live =
        |c: &crate::store::Credentials| c.password_expires_at_ms.is_none_or(|at| now < at);
    let attempted = credentials.as_ref().map(|c| c.info.clone());
    let (user, must_change_password) = match credentials {
        Some(c) if password_ok && c.active && first_password_live(&c) => {
            attempt.succeeded(state).await?;
            (c.info, c.must_change_password)
        }
        _ => {
            let locked_out = attempt.failed(state).await?;
            if let Some(account) = &attempted {
                crate::audit::sign_in::record_failure(state, account, seen, device.id, locked_out);
            }
            return Err(ServerError::InvalidCredentials);
        }
    };
    if must_change_password {
        tracing::info!(user_id = %user.user_id, "first password accepted; own password next");
        return mfa::password_ticket(state, &user, device.id, recovery).await;
    }

    // A recovery login proves the second factor afresh: the grant lives in the cache the
    // keychain loss just closed, and the disk alone must not be enough.
    if let Some(grant) = req
        .mfa_grant
        .as_ref()
        .filter(|_| req.proof_key == ProofKey::Device)
        && state
            .store
            .grant_valid(&hash_secret(grant.expose()), user.user_id, device.id, now)
            .await?
    {
        tracing::info!(user_id = %user.user_id, "login within a second-factor grant");
        return Ok(LoginStep::SignedIn(
            issue_session(state, &user, device.id, false).await?,
        ));
    }
    tracing::info!(user_id = %user.user_id, "password accepted; second factor next");
    let scope = ClinicScope::of_workstation(&device);
    mfa::ticket_for(state, &scope, &user, device.id, recovery).await
}

/// A signed-in user's change of their own password: the current one first (throttled, so
/// a stolen session is no way to guess it), then the new one, which ends every session of
/// theirs; recorded on the clinic's server chain in the same transaction.
pub async fn change(
    state: &AppState,
    principal: &Principal,
    scope: &ClinicScope,
    seen: Seen,
    req: PasswordChange,
) -> Result<(), ServerError> {
    let user = &principal.user;
    // A stolen session must not become a way to guess the password.
    let attempts = [throttle::Key::account(user.clinic_id, &user.username)];
    let attempt = throttle::reserve(state, &attempts).await?;
    let current_ok = matches_stored(state, user, req.current_password.expose()).await?;
    if current_ok {
        attempt.succeeded(state).await?;
    } else {
        let locked_out = attempt.failed(state).await?;
        crate::audit::sign_in::record_failure(state, user, &seen, principal.device_id, locked_out);
        return Err(ServerError::InvalidCredentials);
    }
    if req.new_password == req.current_password {
        return Err(ServerError::WeakPassword);
    }
    let hash = new_password_hash(
        state,
        user,
        req.new_password.expose().to_owned(),
        &[req.current_password.expose()],
    )
    .await?;
    let mut tx = state.store.clinic_tx(scope).await?;
    let seen = seen.for_session(principal.device_id);
    store_password(&mut tx, state, user, &hash, "change_password", seen).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "password changed; sessions ended");
    Ok(())
}

/// The first sign-in of a user whose password someone else chose: their own password
/// replaces it (recorded with it), and the second-factor step follows.
pub async fn choose_first(
    state: &AppState,
    seen: Seen,
    req: FirstPassword,
) -> Result<LoginStep, ServerError> {
    let ticket = mfa::live_ticket(state, req.ticket.expose(), Purpose::Password).await?;
    let user = &ticket.user;
    if matches_stored(state, user, req.new_password.expose()).await? {
        return Err(ServerError::WeakPassword);
    }
    let hash = new_password_hash(state, user, req.new_password.expose().to_owned(), &[]).await?;
    let mut tx = state
        .store
        .clinic_tx(&ClinicScope::of_mfa_ticket(&ticket))
        .await?;
    if !consume_ticket(&mut tx, &ticket.hash).await? {
        return Err(ServerError::InvalidSecondFactor);
    }
    let seen = seen.for_session(ticket.device_id);
    store_password(&mut tx, state, user, &hash, "first_password", seen).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, "first password replaced; second factor next");
    let scope = ClinicScope::of_mfa_ticket(&ticket);
    mfa::ticket_for(state, &scope, user, ticket.device_id, ticket.recovery).await
}

/// In the caller's transaction: the user's new password hash, which ends their sessions and
/// grants, and the `password_changed` event that records it.
async fn store_password(
    tx: &mut ClinicTx,
    state: &AppState,
    user: &UserInfo,
    hash: &str,
    route: &str,
    seen: RequestSeen,
) -> Result<(), ServerError> {
    let scope = tx.scope().clone();
    crate::admin::users::set_password(tx, &scope, user.user_id, hash, state.clock.now_ms()).await?;
    let event = security_event(
        user,
        AuditAction::PasswordChanged,
        "User",
        user.user_id.to_string(),
        route,
        seen,
    );
    server_chain::record_in(tx, state, &scope, vec![event]).await?;
    Ok(())
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
    if password.chars().count() > passwords::MAX_LENGTH {
        return Ok(false);
    }
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
    passwords::check_new(&new, &context, "new_password").await?;
    passwords::hash_in_turn(new).await
}
