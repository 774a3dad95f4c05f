//! The second factor of every login, for every role.
//!
//! A password login from an enrolled device yields a ticket, never a session (unless it
//! carries a live grant from an earlier factor of the same user on the same device). The
//! ticket is redeemed with a TOTP code, a WebAuthn assertion or a recovery code; a user
//! without a factor must set one up with it first. Tickets, ceremony state, factors and
//! grants live in the database, so any instance behind a load balancer can finish a login
//! another began.

pub mod recovery;
pub mod store;
pub mod totp;
pub mod webauthn;

use clinicdesk_protocol::mfa::{LoginStep, MfaEnrolled, MfaTicket};
use clinicdesk_protocol::wire::{LoginResponse, UserInfo};
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::access::Seen;
use crate::error::ServerError;
use crate::random::{hash_secret, token};
use crate::throttle;
use store::{Purpose, Ticket};

/// How long a ticket lives: enough to find the phone or the key.
pub const TICKET_TTL_MS: i64 = 5 * 60 * 1000;
/// Wrong answers a ticket survives; then the password step starts over.
pub const MAX_TICKET_FAILURES: i64 = 3;
/// How long a second factor spares the same user on the same device another one: a
/// working day, the absolute session lifetime.
pub const GRANT_TTL_MS: i64 = crate::auth::SESSION_MAX_AGE_MS;

/// After the password and device proof: a ticket for the factor step.
pub async fn ticket_for(
    state: &AppState,
    user: &UserInfo,
    device_id: Uuid,
) -> Result<LoginStep, ServerError> {
    let methods = store::methods(state.store.pool(), user.user_id).await?;
    let purpose = if methods.is_empty() {
        Purpose::Setup
    } else {
        Purpose::Verify
    };
    issue_ticket(state, user, device_id, purpose, methods).await
}

/// The step before any second factor for a user whose password someone else chose: a
/// ticket that only choosing their own password redeems.
pub async fn password_ticket(
    state: &AppState,
    user: &UserInfo,
    device_id: Uuid,
) -> Result<LoginStep, ServerError> {
    issue_ticket(state, user, device_id, Purpose::Password, Vec::new()).await
}

async fn issue_ticket(
    state: &AppState,
    user: &UserInfo,
    device_id: Uuid,
    purpose: Purpose,
    methods: Vec<clinicdesk_protocol::mfa::MfaMethod>,
) -> Result<LoginStep, ServerError> {
    let ticket = token()?;
    let now = state.clock.now_ms();
    store::insert_ticket(
        state.store.pool(),
        &hash_secret(&ticket),
        user,
        device_id,
        purpose,
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
    let ticket = store::ticket(
        state.store.pool(),
        &hash_secret(ticket),
        state.clock.now_ms(),
    )
    .await?
    .filter(|t| t.purpose == purpose)
    .ok_or(ServerError::InvalidSecondFactor)?;
    throttle::check(state, &[account_key(&ticket)]).await?;
    Ok(ticket)
}

fn account_key(ticket: &Ticket) -> throttle::Key {
    throttle::Key::account(ticket.user.clinic_id, &ticket.user.username)
}

/// A wrong answer: counted against the ticket, then `invalid_second_factor`.
/// Wrong answers count against the account too, so fresh tickets do not buy more guesses.
/// The attempt goes into the trail too ([`crate::audit::sign_in`]).
pub async fn refuse(state: &AppState, ticket: &Ticket, seen: &Seen) -> ServerError {
    let counted = async {
        store::fail_ticket(state.store.pool(), &ticket.hash).await?;
        throttle::fail(state, &[account_key(ticket)]).await
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
    let mut tx = state.store.pool().begin().await?;
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
    let mut login =
        crate::routes::session::issue_session(state, &ticket.user, ticket.device_id).await?;
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
