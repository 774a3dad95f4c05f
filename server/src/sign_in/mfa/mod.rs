//! The second factor of every login, for every role.
//!
//! A password login from an enrolled device yields a ticket, never a session (unless it
//! carries a live grant from an earlier factor of the same user on the same device). The
//! ticket is redeemed with a TOTP code, a WebAuthn assertion or a recovery code; a user
//! without a factor must set one up with it first. Tickets, ceremony state, factors and
//! grants live in the database (`crate::store::mfa`), so any instance behind a load
//! balancer can finish a login another began. The steps themselves are in [`verify`] and
//! [`setup`]; an admin's reset of a user's factors is [`reset`].
//!
//! Like all of `sign_in`, must not import `crate::http`.

pub mod recovery;
pub mod setup;
pub mod totp;
pub mod verify;
pub mod webauthn;

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::{LoginStep, MfaEnrolled, MfaMethod, MfaTicket, WebauthnChallenge};
use clinicdesk_protocol::wire::{LoginResponse, UserInfo};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::audit::access::Seen;
use crate::audit::server_chain::{self, security_event};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Principal};
use crate::secrets::random::{hash_secret, token};
use crate::sign_in::session::issue_session;
use crate::sign_in::throttle;
use crate::state::AppState;
use crate::store::mfa as store;
pub use crate::store::mfa::{Purpose, Ticket};
pub use setup::{confirm_totp, setup_totp, setup_webauthn, setup_webauthn_challenge};
pub use verify::{verify_recovery_code, verify_totp, verify_webauthn, webauthn_challenge};

/// How long a ticket lives: enough to find the phone or the key.
pub const TICKET_TTL_MS: i64 = 5 * 60 * 1000;
/// Wrong answers a ticket survives; then the password step starts over.
pub const MAX_TICKET_FAILURES: i64 = 3;
/// How long a second factor spares the same user on the same device another one: a
/// working day, the absolute session lifetime.
pub const GRANT_TTL_MS: i64 = clinicdesk_protocol::wire::MFA_GRANT_MS;

/// After the password and device proof: a ticket for the factor step. `recovery`: the
/// device proof was the recovery key's. `scope`: the clinic of the device the password was
/// proven on, where the user's factors are read.
pub async fn ticket_for(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    device_id: Uuid,
    recovery: bool,
) -> Result<LoginStep, ServerError> {
    let methods = methods(state, scope, user.user_id).await?;
    let purpose = if methods.is_empty() {
        Purpose::Setup
    } else {
        Purpose::Verify
    };
    issue_ticket(state, user, device_id, purpose, recovery, methods).await
}

/// The step before any second factor for a user whose password someone else chose: a
/// ticket that only choosing their own password redeems.
pub async fn password_ticket(
    state: &AppState,
    user: &UserInfo,
    device_id: Uuid,
    recovery: bool,
) -> Result<LoginStep, ServerError> {
    issue_ticket(
        state,
        user,
        device_id,
        Purpose::Password,
        recovery,
        Vec::new(),
    )
    .await
}

/// The factors a user can prove. Recovery codes count only beside a real factor.
async fn methods(
    state: &AppState,
    scope: &ClinicScope,
    user_id: Uuid,
) -> Result<Vec<MfaMethod>, ServerError> {
    let factors = state.store.factors(scope, user_id).await?;
    let mut out = Vec::new();
    if factors.totp {
        out.push(MfaMethod::Totp);
    }
    if factors.webauthn {
        out.push(MfaMethod::Webauthn);
    }
    if factors.recovery_codes && !out.is_empty() {
        out.push(MfaMethod::RecoveryCode);
    }
    Ok(out)
}

async fn issue_ticket(
    state: &AppState,
    user: &UserInfo,
    device_id: Uuid,
    purpose: Purpose,
    recovery: bool,
    methods: Vec<MfaMethod>,
) -> Result<LoginStep, ServerError> {
    let ticket = token()?;
    let now = state.clock.now_ms();
    state
        .store
        .insert_ticket(
            &hash_secret(&ticket),
            user,
            device_id,
            purpose,
            recovery,
            now + TICKET_TTL_MS,
        )
        .await?;
    let ticket = MfaTicket {
        ticket: ticket.into(),
        methods,
        expires_in_secs: u64::try_from(TICKET_TTL_MS / 1000).unwrap_or(0),
    };
    Ok(match purpose {
        Purpose::Verify => LoginStep::SecondFactor(ticket),
        Purpose::Setup => LoginStep::SetUpSecondFactor(ticket),
        Purpose::Password => LoginStep::ChooseNewPassword(ticket),
    })
}

/// The live ticket for `purpose`, or `invalid_second_factor`.
pub async fn live_ticket(
    state: &AppState,
    ticket: &str,
    purpose: Purpose,
) -> Result<Ticket, ServerError> {
    let ticket = state
        .store
        .ticket(&hash_secret(ticket), state.clock.now_ms())
        .await?
        .filter(|t| t.purpose == purpose)
        .ok_or(ServerError::InvalidSecondFactor)?;
    throttle::check(state, &[account_key(&ticket)]).await?;
    Ok(ticket)
}

/// The live ticket for `purpose`, with this answer counted against the ticket and the
/// account before it is checked (see [`throttle::reserve`]): a ticket with its limit of
/// answers (wrong, or still being checked) is spent. A right answer then redeems the ticket
/// and clears the account's count; a wrong one goes to [`refuse`].
pub async fn answering(
    state: &AppState,
    ticket: &str,
    purpose: Purpose,
) -> Result<Ticket, ServerError> {
    let ticket = live_ticket(state, ticket, purpose).await?;
    if !state
        .store
        .reserve_ticket_answer(&ticket.hash, MAX_TICKET_FAILURES)
        .await?
    {
        return Err(ServerError::InvalidSecondFactor);
    }
    // Settled by the sign-in (which clears the account) or by `refuse`.
    let _counted = throttle::reserve(state, &[account_key(&ticket)]).await?;
    Ok(ticket)
}

fn account_key(ticket: &Ticket) -> throttle::Key {
    throttle::Key::account(ticket.user.clinic_id, &ticket.user.username)
}

/// A wrong answer (already counted against the ticket and the account by [`answering`]),
/// then `invalid_second_factor`. Wrong answers count against the account too, so fresh
/// tickets do not buy more guesses. The attempt goes into the trail too
/// ([`crate::audit::sign_in`]).
pub async fn refuse(state: &AppState, ticket: &Ticket, seen: &Seen) -> ServerError {
    let counted = async {
        // The ticket dies at the limit and the user starts over with the password, which
        // is throttled on its own.
        state
            .store
            .burn_spent_ticket(&ticket.hash, MAX_TICKET_FAILURES)
            .await?;
        throttle::failed(state, &[account_key(ticket)]).await
    };
    match counted.await {
        Ok(locked_out) => {
            crate::audit::sign_in::record_failure(
                state,
                &ticket.user,
                seen,
                ticket.device_id,
                locked_out,
            );
            ServerError::InvalidSecondFactor
        }
        Err(e) => e,
    }
}

/// `result`, with an `invalid_second_factor` counted against the ticket.
pub async fn counted<T>(
    state: &AppState,
    ticket: &Ticket,
    seen: &Seen,
    result: Result<T, ServerError>,
) -> Result<T, ServerError> {
    match result {
        Err(ServerError::InvalidSecondFactor) => Err(refuse(state, ticket, seen).await),
        other => other,
    }
}

/// A WebAuthn ceremony begun (its options and state): the state is kept in the ticket, so
/// any instance can finish it, and the options go to the client with the origin to use.
async fn webauthn_ceremony(
    state: &AppState,
    ticket: &Ticket,
    (options, pending): (serde_json::Value, String),
) -> Result<WebauthnChallenge, ServerError> {
    state
        .store
        .set_ticket_pending(&ticket.hash, &pending)
        .await?;
    Ok(WebauthnChallenge {
        options,
        origin: state.relying_party.origin(),
    })
}

/// What a checked second factor spends, in the transaction that issues the grant.
pub enum Proof<'a> {
    /// The TOTP step accepted (no code of it or before it works again).
    TotpStep(i64),
    /// The hash of the recovery code used.
    RecoveryCode(&'a str),
    /// The WebAuthn credential that signed, with its updated counter (id, JSON).
    Passkey(String, String),
}

/// Spends `proof` and the ticket, issues a grant, then a session. If the proof was spent
/// meanwhile by a concurrent request (the same TOTP step, the same recovery code), the
/// answer is `invalid_second_factor`.
pub async fn sign_in_with(
    state: &AppState,
    ticket: &Ticket,
    seen: &Seen,
    proof: Proof<'_>,
) -> Result<LoginResponse, ServerError> {
    let user_id = ticket.user.user_id;
    let mut tx = state.store.tx().await?;
    // The factor's rows are behind the clinic's wall; the ticket names the clinic.
    state
        .store
        .enter_clinic(&mut tx, &ClinicScope::of_mfa_ticket(ticket))
        .await?;
    let spent = match proof {
        Proof::TotpStep(step) => store::advance_totp_step(&mut tx, user_id, step).await?,
        Proof::RecoveryCode(hash) => {
            store::use_recovery_code(&mut tx, user_id, hash, state.clock.now_ms()).await?
        }
        Proof::Passkey(id, json) => {
            store::update_passkey(&mut tx, user_id, &id, &json).await?;
            true
        }
    };
    if !spent {
        drop(tx);
        return Err(refuse(state, ticket, seen).await);
    }
    let grant = redeem(&mut tx, state, ticket).await?;
    tx.commit().await?;
    session_for(state, ticket, grant).await
}

/// The factor is proven: inside the caller's transaction, uses the ticket up and issues
/// a grant, then (after commit, by the caller) a session. Returns the grant.
pub async fn redeem(
    conn: &mut AnyConnection,
    state: &AppState,
    ticket: &Ticket,
) -> Result<String, ServerError> {
    if !store::consume_ticket(conn, &ticket.hash).await? {
        return Err(ServerError::InvalidSecondFactor);
    }
    let grant = token()?;
    store::insert_grant(
        conn,
        &hash_secret(&grant),
        &ticket.user,
        ticket.device_id,
        state.clock.now_ms() + GRANT_TTL_MS,
    )
    .await?;
    Ok(grant)
}

/// A session for the ticket's user and device, carrying the grant just issued.
pub async fn session_for(
    state: &AppState,
    ticket: &Ticket,
    grant: String,
) -> Result<LoginResponse, ServerError> {
    // Every ticket ends in a factor proven now, so a recovery ticket's session is a
    // recovery sign-in with a fresh second factor.
    let mut login = issue_session(state, &ticket.user, ticket.device_id, ticket.recovery).await?;
    login.mfa_grant = Some(grant.into());
    Ok(login)
}

/// After a first factor was stored: the session and the recovery codes, shown once.
pub async fn enrolled(
    state: &AppState,
    ticket: &Ticket,
    grant: String,
    recovery_codes: Vec<String>,
) -> Result<MfaEnrolled, ServerError> {
    Ok(MfaEnrolled {
        session: session_for(state, ticket, grant).await?,
        recovery_codes: recovery_codes.into_iter().map(Into::into).collect(),
    })
}

/// An admin's reset of another user's second factors: every factor, code and ticket goes,
/// with the user's sessions and grants, recorded on the clinic's server chain in the same
/// transaction; their next sign-in sets up a factor again.
pub async fn reset(
    state: &AppState,
    admin: &Principal,
    scope: &ClinicScope,
    seen: Seen,
    user_id: Uuid,
) -> Result<(), ServerError> {
    let by = &admin.user;
    if user_id == by.user_id {
        // Another admin resets yours: one person cannot strip their own second factor.
        return Err(ServerError::Forbidden);
    }
    if !state.store.is_clinic_user(scope, user_id).await? {
        return Err(ServerError::NotFound);
    }
    let mut tx = state.store.clinic_tx(scope).await?;
    store::reset_factors(&mut tx, user_id, state.clock.now_ms()).await?;
    let event = security_event(
        by,
        AuditAction::MfaReset,
        "User",
        user_id.to_string(),
        "mfa_reset",
        seen.for_session(admin.device_id),
    );
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    tracing::info!(by = %by.user_id, "second factors reset");
    Ok(())
}
