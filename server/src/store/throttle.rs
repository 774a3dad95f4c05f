//! Failed sign-in counts: the table `auth_failures`, one row per throttled key (an account
//! or a client address), so every instance behind a load balancer counts the same. What the
//! counts mean (limits, windows, lockouts) is `crate::sign_in::throttle`'s business.

use super::*;

impl Store {
    /// When the key's lockout ends, if it is locked out at `now_ms`.
    pub async fn locked_until(&self, key: &str, now_ms: i64) -> Result<Option<i64>, ServerError> {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT locked_until_ms FROM auth_failures WHERE key = $1 AND locked_until_ms > $2",
        )
        .bind(key)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        Ok(until)
    }

    /// Forgets the key's failures (a completed sign-in).
    pub async fn clear_failures(&self, key: &str) -> Result<(), ServerError> {
        sqlx::query("DELETE FROM auth_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What [`reserve_attempt`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Counted: the attempt may be checked.
    Counted,
    /// The key is locked out until then.
    Locked(i64),
    /// The window already holds `limit` attempts (failed or still being checked).
    Full,
}

/// Counts an attempt against `key` before its answer is checked, in the caller's write
/// transaction, and says whether it may go ahead. On [`Reserved::Locked`] or
/// [`Reserved::Full`] the caller rolls back, so a refused attempt is not counted. One
/// statement, so concurrent attempts are counted one after another (SQLite's write lock,
/// PostgreSQL's row lock): they cannot all see room for themselves.
pub async fn reserve_attempt(
    conn: &mut AnyConnection,
    key: &str,
    now_ms: i64,
    window_ms: i64,
    limit: i64,
) -> Result<Reserved, ServerError> {
    let row = sqlx::query(
        "INSERT INTO auth_failures (key, failures, window_start_ms) VALUES ($1, 1, $2)
             ON CONFLICT (key) DO UPDATE SET
                 failures = CASE WHEN auth_failures.window_start_ms <= $2 - $3 THEN 1
                                 ELSE auth_failures.failures + 1 END,
                 window_start_ms = CASE WHEN auth_failures.window_start_ms <= $2 - $3 THEN $2
                                   ELSE auth_failures.window_start_ms END
             RETURNING failures, locked_until_ms",
    )
    .bind(key)
    .bind(now_ms)
    .bind(window_ms)
    .fetch_one(conn)
    .await?;
    let failures: i64 = row.get(0);
    let locked_until: Option<i64> = row.get(1);
    Ok(match locked_until {
        Some(until) if until > now_ms => Reserved::Locked(until),
        _ if failures > limit => Reserved::Full,
        _ => Reserved::Counted,
    })
}

/// Gives a reserved attempt back: it was right.
pub async fn release_attempt(conn: &mut AnyConnection, key: &str) -> Result<(), ServerError> {
    sqlx::query("UPDATE auth_failures SET failures = failures - 1 WHERE key = $1 AND failures > 0")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks `key` out until `until_ms` if its window holds `limit` failures; its count starts
/// again from zero. Whether it did.
pub async fn lock_out_if_full(
    conn: &mut AnyConnection,
    key: &str,
    limit: i64,
    until_ms: i64,
    now_ms: i64,
) -> Result<bool, ServerError> {
    let done = sqlx::query(
        "UPDATE auth_failures SET locked_until_ms = $1, failures = 0, window_start_ms = $2
                 WHERE key = $3 AND failures >= $4",
    )
    .bind(until_ms)
    .bind(now_ms)
    .bind(key)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the keys whose window and lockout have both passed: they carry no information
/// any more.
pub async fn forget_stale_failures(
    conn: &mut AnyConnection,
    now_ms: i64,
    window_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "DELETE FROM auth_failures WHERE window_start_ms <= $1 - $2
         AND (locked_until_ms IS NULL OR locked_until_ms <= $1)",
    )
    .bind(now_ms)
    .bind(window_ms)
    .execute(conn)
    .await?;
    Ok(())
}
