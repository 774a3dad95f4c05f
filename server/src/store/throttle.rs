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

/// Counts a failure against `key` and returns its failures in the current window. A new
/// window starts when the last one (`window_ms` long) ended; a lockout ends with its time.
pub async fn count_failure(
    conn: &mut AnyConnection,
    key: &str,
    now_ms: i64,
    window_ms: i64,
) -> Result<i64, ServerError> {
    let row = sqlx::query(
        "INSERT INTO auth_failures (key, failures, window_start_ms) VALUES ($1, 1, $2)
             ON CONFLICT (key) DO UPDATE SET
                 failures = CASE WHEN auth_failures.window_start_ms <= $2 - $3 THEN 1
                                 ELSE auth_failures.failures + 1 END,
                 window_start_ms = CASE WHEN auth_failures.window_start_ms <= $2 - $3 THEN $2
                                   ELSE auth_failures.window_start_ms END
             RETURNING failures",
    )
    .bind(key)
    .bind(now_ms)
    .bind(window_ms)
    .fetch_one(conn)
    .await?;
    Ok(row.get::<i64, _>(0))
}

/// Locks `key` out until `until_ms`; its count starts again from zero.
pub async fn lock_out(
    conn: &mut AnyConnection,
    key: &str,
    until_ms: i64,
    now_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "UPDATE auth_failures SET locked_until_ms = $1, failures = 0, window_start_ms = $2
                 WHERE key = $3",
    )
    .bind(until_ms)
    .bind(now_ms)
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
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
