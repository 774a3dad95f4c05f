//! Setting up a user's first second factor with a setup ticket: a TOTP secret confirmed by
//! a code, or a WebAuthn credential. The factor, new recovery codes, the `mfa_enrolled`
//! event and the redeemed ticket commit together; the session follows.

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::{MfaEnrolled, TotpSetup, WebauthnChallenge};

use super::totp::TotpSecret;
use super::webauthn::credential_id;
use super::{
    Purpose, Ticket, answering, counted, enrolled, live_ticket, recovery, redeem, refuse,
    webauthn_ceremony,
};
use crate::audit::access::Seen;
use crate::audit::server_chain::{self, security_event};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::ClinicTx;
use crate::store::mfa::{insert_passkey, insert_totp, replace_recovery_codes};

/// Ceremony state of a TOTP setup: the sealed secret awaiting its first code.
const TOTP_PENDING: &str = "totp:";

/// A new TOTP secret for an authenticator app, kept sealed in the ticket until confirmed.
pub async fn setup_totp(state: &AppState, ticket: &str) -> Result<TotpSetup, ServerError> {
    let ticket = live_ticket(state, ticket, Purpose::Setup).await?;
    let clinic_name = state
        .store
        .clinic_name(ticket.user.clinic_id)
        .await?
        .unwrap_or_default();
    let secret = TotpSecret::generate()?;
    let setup = secret.setup(&ticket.user.username, &clinic_name)?;
    let sealed = state.seal.seal(ticket.user.user_id, secret.as_bytes())?;
    state
        .store
        .set_ticket_pending(&ticket.hash, &format!("{TOTP_PENDING}{sealed}"))
        .await?;
    Ok(setup)
}

/// The first code of the secret [`setup_totp`] gave: the factor is stored.
pub async fn confirm_totp(
    state: &AppState,
    seen: Seen,
    ticket: &str,
    code: &str,
) -> Result<MfaEnrolled, ServerError> {
    let ticket = answering(state, ticket, Purpose::Setup).await?;
    let Some(sealed) = ticket
        .pending
        .as_deref()
        .and_then(|p| p.strip_prefix(TOTP_PENDING))
    else {
        return Err(ServerError::InvalidSecondFactor);
    };
    let secret = TotpSecret::from_bytes(state.seal.open(ticket.user.user_id, sealed)?)?;
    let now = state.clock.now_ms();
    let Some(step) = secret.check(code, now, 0)? else {
        return Err(refuse(state, &ticket, &seen).await);
    };
    let mut tx = state
        .store
        .clinic_tx(&ClinicScope::of_mfa_ticket(&ticket))
        .await?;
    insert_totp(&mut tx, &ticket.user, sealed, step, now).await?;
    let (codes, grant) = first_factor_stored(&mut tx, state, &ticket, seen, "confirm_totp").await?;
    tx.commit().await?;
    tracing::info!(user_id = %ticket.user.user_id, "TOTP set up");
    enrolled(state, &ticket, grant, codes).await
}

/// Registration options for a new WebAuthn credential; the state is kept in the ticket.
pub async fn setup_webauthn_challenge(
    state: &AppState,
    ticket: &str,
) -> Result<WebauthnChallenge, ServerError> {
    let ticket = live_ticket(state, ticket, Purpose::Setup).await?;
    let ceremony = state.relying_party.start_registration(&ticket.user, &[])?;
    webauthn_ceremony(state, &ticket, ceremony).await
}

/// The new credential answering [`setup_webauthn_challenge`]: the factor is stored.
pub async fn setup_webauthn(
    state: &AppState,
    seen: Seen,
    ticket: &str,
    credential: serde_json::Value,
) -> Result<MfaEnrolled, ServerError> {
    let ticket = answering(state, ticket, Purpose::Setup).await?;
    let finished = state
        .relying_party
        .finish_registration(ticket.pending.as_deref(), credential);
    let passkey = counted(state, &ticket, &seen, finished).await?;
    let json =
        serde_json::to_string(&passkey).map_err(|_| ServerError::Internal("passkey encoding"))?;
    let mut tx = state
        .store
        .clinic_tx(&ClinicScope::of_mfa_ticket(&ticket))
        .await?;
    insert_passkey(
        &mut tx,
        &ticket.user,
        &credential_id(&passkey),
        &json,
        state.clock.now_ms(),
    )
    .await?;
    let (codes, grant) =
        first_factor_stored(&mut tx, state, &ticket, seen, "setup_webauthn").await?;
    tx.commit().await?;
    tracing::info!(user_id = %ticket.user.user_id, "WebAuthn credential set up");
    enrolled(state, &ticket, grant, codes).await
}

/// After the first factor's row, in its transaction: new recovery codes, the
/// `mfa_enrolled` event, and the ticket redeemed. Returns the codes and the grant.
async fn first_factor_stored(
    tx: &mut ClinicTx,
    state: &AppState,
    ticket: &Ticket,
    seen: Seen,
    route: &str,
) -> Result<(Vec<String>, String), ServerError> {
    let (codes, hashes) = recovery::generate()?;
    replace_recovery_codes(tx, &ticket.user, &hashes).await?;
    let event = security_event(
        &ticket.user,
        AuditAction::MfaEnrolled,
        "User",
        ticket.user.user_id.to_string(),
        route,
        seen.for_session(ticket.device_id),
    );
    let scope = tx.scope().clone();
    server_chain::record_in(tx, state, &scope, vec![event]).await?;
    let grant = redeem(tx, state, ticket).await?;
    Ok((codes, grant))
}
