//! Throttling of sign-in attempts, kept in the database so every instance agrees.
//!
//! Two keys count failures: the account (clinic and username as typed, known or not, so a
//! lockout says nothing about whether the account exists) and the client address. Wrong
//! passwords count against both, wrong second-factor answers against the account. Past the
//! limit within the window the key is locked out for a while: requests answer
//! `too_many_attempts` (429, `Retry-After`) before any password is checked. A completed
//! sign-in clears the account's count; the address's count only ages out.

use sqlx::Row;
use uuid::Uuid;

use crate::error::ServerError;
use crate::state::AppState;

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
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT locked_until_ms FROM auth_failures WHERE key = $1 AND locked_until_ms > $2",
        )
        .bind(&key.key)
        .bind(now)
        .fetch_optional(state.store.pool())
        .await?
        .flatten();
        if let Some(until) = until {
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
    let mut tx = state.store.pool().begin().await?;
    let mut locked_now = false;
    let mut account_locked = false;
    for key in keys {
        // A new window starts when the last one ended; a lockout ends with its time.
        let row = sqlx::query(
            "INSERT INTO auth_failures (key, failures, window_start_ms) VALUES ($1, 1, $2)
             ON CONFLICT (key) DO UPDATE SET
                 failures = CASE WHEN auth_failures.window_start_ms <= $2 - $3 THEN 1
                                 ELSE auth_failures.failures + 1 END,
                 window_start_ms = CASE WHEN auth_failures.window_start_ms <= $2 - $3 THEN $2
                                   ELSE auth_failures.window_start_ms END
             RETURNING failures",
        )
        .bind(&key.key)
        .bind(now)
        .bind(WINDOW_MS)
        .fetch_one(&mut *tx)
        .await?;
        if row.get::<i64, _>(0) >= key.limit {
            sqlx::query(
                "UPDATE auth_failures SET locked_until_ms = $1, failures = 0, window_start_ms = $2
                 WHERE key = $3",
            )
            .bind(now + LOCKOUT_MS)
            .bind(now)
            .bind(&key.key)
            .execute(&mut *tx)
            .await?;
            locked_now = true;
            account_locked |= key.key.starts_with("account:");
        }
    }
    // Keys whose window and lockout have both passed carry no information any more.
    sqlx::query(
        "DELETE FROM auth_failures WHERE window_start_ms <= $1 - $2
         AND (locked_until_ms IS NULL OR locked_until_ms <= $1)",
    )
    .bind(now)
    .bind(WINDOW_MS)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if locked_now {
        tracing::warn!("sign-in attempts locked out for a while");
    }
    Ok(account_locked)
}

/// A completed sign-in: the account starts from zero.
pub async fn clear(state: &AppState, key: &Key) -> Result<(), ServerError> {
    sqlx::query("DELETE FROM auth_failures WHERE key = $1")
        .bind(&key.key)
        .execute(state.store.pool())
        .await?;
    Ok(())
}
