//! The second step of a login with a factor the user has: a TOTP code, a recovery code or
//! a WebAuthn assertion. A right answer spends its proof and the ticket and opens a session
//! ([`super::sign_in_with`]); a wrong one counts against the ticket and the account.

use clinicdesk_protocol::mfa::WebauthnChallenge;
use clinicdesk_protocol::wire::LoginResponse;

use super::totp::TotpSecret;
use super::webauthn::{credential_id, parse_passkeys};
use super::{
    Proof, Purpose, answering, counted, live_ticket, recovery, refuse, sign_in_with,
    webauthn_ceremony,
};
use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;

/// A TOTP code for the ticket's user: a step later than the last one accepted.
pub async fn verify_totp(
    state: &AppState,
    seen: &Seen,
    ticket: &str,
    code: &str,
) -> Result<LoginResponse, ServerError> {
    let ticket = answering(state, ticket, Purpose::Verify).await?;
    let user_id = ticket.user.user_id;
    let scope = ClinicScope::of_mfa_ticket(&ticket);
    let Some(stored) = state.store.totp(&scope, user_id).await? else {
        return Err(refuse(state, &ticket, seen).await);
    };
    let secret = TotpSecret::from_bytes(state.seal.open(user_id, &stored.sealed)?)?;
    let Some(step) = secret.check(code, state.clock.now_ms(), stored.last_step)? else {
        return Err(refuse(state, &ticket, seen).await);
    };
    sign_in_with(state, &ticket, seen, Proof::TotpStep(step)).await
}

/// One of the user's unused recovery codes, as typed.
pub async fn verify_recovery_code(
    state: &AppState,
    seen: &Seen,
    ticket: &str,
    code: &str,
) -> Result<LoginResponse, ServerError> {
    let ticket = answering(state, ticket, Purpose::Verify).await?;
    let hash = recovery::hash_of(code);
    let login = sign_in_with(state, &ticket, seen, Proof::RecoveryCode(&hash)).await?;
    tracing::info!(user_id = %ticket.user.user_id, "recovery code used");
    Ok(login)
}

/// A WebAuthn challenge for the user's credentials; its state is kept in the ticket.
pub async fn webauthn_challenge(
    state: &AppState,
    ticket: &str,
) -> Result<WebauthnChallenge, ServerError> {
    let ticket = live_ticket(state, ticket, Purpose::Verify).await?;
    let scope = ClinicScope::of_mfa_ticket(&ticket);
    let passkeys = parse_passkeys(&state.store.passkeys(&scope, ticket.user.user_id).await?)?;
    if passkeys.is_empty() {
        return Err(ServerError::InvalidSecondFactor);
    }
    let ceremony = state.relying_party.start_authentication(&passkeys)?;
    webauthn_ceremony(state, &ticket, ceremony).await
}

/// A WebAuthn assertion answering the ticket's challenge.
pub async fn verify_webauthn(
    state: &AppState,
    seen: &Seen,
    ticket: &str,
    credential: serde_json::Value,
) -> Result<LoginResponse, ServerError> {
    let ticket = answering(state, ticket, Purpose::Verify).await?;
    let user_id = ticket.user.user_id;
    let scope = ClinicScope::of_mfa_ticket(&ticket);
    let passkeys = parse_passkeys(&state.store.passkeys(&scope, user_id).await?)?;
    let finished =
        state
            .relying_party
            .finish_authentication(ticket.pending.as_deref(), credential, passkeys);
    let passkey = counted(state, &ticket, seen, finished).await?;
    let json =
        serde_json::to_string(&passkey).map_err(|_| ServerError::Internal("passkey encoding"))?;
    let proof = Proof::Passkey(credential_id(&passkey), json);
    sign_in_with(state, &ticket, seen, proof).await
}
