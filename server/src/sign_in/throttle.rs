//! Throttling of sign-in attempts, kept in the database so every instance agrees.
//!
//! Two keys count failures: the account (clinic and username as typed, known or not, so a
//! lockout says nothing about whether the account exists) and the client address. Wrong
//! passwords count against both, wrong second-factor answers against the account. Past the
//! limit within the window the key is locked out for a while: requests answer
//! `too_many_attempts` (429, `Retry-After`) before any password is checked. A completed
//! sign-in clears the account's count; the address's count only ages out.
//!
//! An attempt is counted before its answer is checked ([`reserve`]) and given back if it
//! was right ([`Attempt::succeeded`]): so concurrent attempts cannot all pass a check that
//! only the first failure would have closed. A window holding `limit` attempts, failed or
//! still being checked, refuses the next until one is given back or the window ends.

use uuid::Uuid;

use crate::error::ServerError;
use crate::state::AppState;
use crate::store::throttle::{
    Reserved, forget_stale_failures, lock_out_if_full, release_attempt, reserve_attempt,
};

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

/// How long a caller refused for a full window (attempts still being checked) waits: a
/// moment, as one of those may turn out right and be given back.
const FULL_RETRY_SECS: u64 = 5;

/// An attempt counted against its keys before its answer is checked: settle it with
/// [`Attempt::succeeded`] or [`Attempt::failed`]. Dropped unsettled, it stays counted as a
/// failure (an error midway fails closed).
#[must_use = "an attempt is given back when right, or settled as a failure"]
#[derive(Debug)]
pub struct Attempt {
    keys: Vec<Key>,
}

/// Counts an attempt against every key at once, or refuses it with `too_many_attempts`
/// (nothing counted) if any key is locked out or already holds its limit.
pub async fn reserve(state: &AppState, keys: &[Key]) -> Result<Attempt, ServerError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_write().await?;
    for key in keys {
        match reserve_attempt(&mut tx, &key.key, now, WINDOW_MS, key.limit).await? {
            Reserved::Counted => {}
            Reserved::Locked(until) => {
                tx.rollback().await?;
                return Err(locked(until, now));
            }
            Reserved::Full => {
                tx.rollback().await?;
                return Err(ServerError::TooManyAttempts {
                    retry_after_secs: FULL_RETRY_SECS,
                });
            }
        }
    }
    tx.commit().await?;
    Ok(Attempt {
        keys: keys.to_vec(),
    })
}

impl Attempt {
    /// The answer was right: the attempt is given back.
    pub async fn succeeded(self, state: &AppState) -> Result<(), ServerError> {
        let mut tx = state.store.begin_write().await?;
        for key in &self.keys {
            release_attempt(&mut tx, &key.key).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The answer was wrong: it stays counted, and a key that now holds its limit of
    /// failures is locked out. Whether an account was locked by it.
    pub async fn failed(self, state: &AppState) -> Result<bool, ServerError> {
        failed(state, &self.keys).await
    }
}

/// Settles wrong answers already counted against `keys`: a key holding its limit is
/// locked out. Whether an account was locked.
pub async fn failed(state: &AppState, keys: &[Key]) -> Result<bool, ServerError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_write().await?;
    let mut locked_now = false;
    let mut account_locked = false;
    for key in keys {
        if lock_out_if_full(&mut tx, &key.key, key.limit, now + LOCKOUT_MS, now).await? {
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
