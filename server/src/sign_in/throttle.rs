//! Throttling of sign-in attempts, kept in the database so every instance agrees.
//!
//! Two keys count failures: the account (clinic and username as typed, known or not, so a
//! lockout says nothing about whether the account exists) and the client address. Wrong
//! passwords count against both, wrong second-factor answers against the account. Past the
//! limit within the window the key is locked out for a while: requests answer
//! `too_many_attempts` (429, `Retry-After`) before any password is checked. A completed
//! sign-in clears the account's count; the address's count only ages out.

use uuid::Uuid;

use crate::error::ServerError;
use crate::state::AppState;
use crate::store::throttle::{count_failure, forget_stale_failures, lock_out};

/// Failures counted within this window...
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// ...lock the key for this long.
pub const LOCKOUT_MS: i64 = 15 * 60 * 1000;
/// Wrong answers an account survives per window (password and second factor alike).
pub const ACCOUNT_LIMIT: i64 = 5;
/// Wrong passwords one address may send per window, whatever the accounts: generous, as
/// a clinic's workstations often share one address.
pub const ADDRESS_LIMIT: i64 = 30;

/// A throttled key and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    key: String,
    limit: i64,
}

impl Key {
    pub fn account(clinic_id: Uuid, username: &str) -> Self {
        Self {
            key: format!("account:{clinic_id}:{username}"),
            limit: ACCOUNT_LIMIT,
        }
    }

    /// The client's address as the connection showed it.
    pub fn address(ip: &str) -> Self {
        Self {
            key: format!("address:{ip}"),
            limit: ADDRESS_LIMIT,
        }
    }
}

/// `too_many_attempts` if any of `keys` is locked out now.
pub async fn check(state: &AppState, keys: &[Key]) -> Result<(), ServerError> {
    let now = state.clock.now_ms();
    for key in keys {
        if let Some(until) = state.store.locked_until(&key.key, now).await? {
            return Err(locked(until, now));
        }
    }
    Ok(())
}

fn locked(until_ms: i64, now_ms: i64) -> ServerError {
    let ms = u64::try_from(until_ms.saturating_sub(now_ms)).unwrap_or(0);
    ServerError::TooManyAttempts {
        retry_after_secs: ms.div_ceil(1000).max(1),
    }
}

/// Counts a failure against each key; a key reaching its limit is locked out. Returns
/// whether this failure locked out an account (rather than only an address).
pub async fn fail(state: &AppState, keys: &[Key]) -> Result<bool, ServerError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.tx().await?;
    let mut locked_now = false;
    let mut account_locked = false;
    for key in keys {
        let failures = count_failure(&mut tx, &key.key, now, WINDOW_MS).await?;
        if failures >= key.limit {
            lock_out(&mut tx, &key.key, now + LOCKOUT_MS, now).await?;
            locked_now = true;
            account_locked |= key.key.starts_with("account:");
        }
    }
    forget_stale_failures(&mut tx, now, WINDOW_MS).await?;
    tx.commit().await?;
    if locked_now {
        tracing::warn!("sign-in attempts locked out for a while");
    }
    Ok(account_locked)
}

/// A completed sign-in: the account starts from zero.
pub async fn clear(state: &AppState, key: &Key) -> Result<(), ServerError> {
    state.store.clear_failures(&key.key).await
}
