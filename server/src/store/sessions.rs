//! Sessions and login nonces (the tables `sessions` and `login_nonces`): opened at sign-in,
//! looked up by token hash on every request, touched and revoked. A user's sessions end with
//! their second-factor grants (`mfa_grants`), so [`end_user_sessions`] revokes both.

use super::sql::Statement;
use super::*;

/// A live session looked up by token hash.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: UserInfo,
    pub device_id: Uuid,
    pub created_at_ms: i64,
    pub last_seen_at_ms: i64,
    pub revoked: bool,
    pub device_revoked: bool,
    pub idle_timeout_secs: u64,
    /// Opened by a recovery sign-in with a fresh second factor.
    pub recovery: bool,
}

/// One sign-in of a user on a workstation: when, and the role it was granted (`None` only
/// for a session of a user whose role was unknown when the column was added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignIn {
    pub at_ms: i64,
    pub role: Option<Role>,
}

impl Store {
    /// The sign-ins of `user` on `device` that tell what the workstation could claim for
    /// them between `from_ms` and `to_ms`: the latest at or before `from_ms`, every one
    /// after it up to `to_ms`, and, when there is none up to `to_ms`, the first one after
    /// (so an actor who signed in there only later is told apart from one who never did).
    /// Oldest first; empty when the user never signed in on the device.
    pub async fn sign_ins_around(
        &self,
        device: Uuid,
        user: Uuid,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SignIn>, ServerError> {
        let (device, user) = (device.to_string(), user.to_string());
        let select = |condition: &str, order: &str, limit: &str| {
            format!(
                "SELECT created_at_ms, role FROM sessions
                 WHERE device_id = $1 AND user_id = $2 AND {condition}
                 ORDER BY created_at_ms {order}{limit}"
            )
        };
        let read = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<SignIn>, ServerError> {
            rows.iter()
                .map(|r| {
                    Ok(SignIn {
                        at_ms: r.get(0),
                        role: r.get::<Option<&str>, _>(1).map(parse_role).transpose()?,
                    })
                })
                .collect()
        };
        // The SQL text is one of the fixed strings above; every value is bound.
        let latest = sqlx::query(sqlx::AssertSqlSafe(select(
            "created_at_ms <= $3",
            "DESC",
            " LIMIT 1",
        )))
        .bind(&device)
        .bind(&user)
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await?;
        let during = sqlx::query(sqlx::AssertSqlSafe(select(
            "created_at_ms > $3 AND created_at_ms <= $4",
            "ASC",
            "",
        )))
        .bind(&device)
        .bind(&user)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut found = read(latest)?;
        found.extend(read(during)?);
        if found.is_empty() {
            let first = sqlx::query(sqlx::AssertSqlSafe(select(
                "created_at_ms > $3",
                "ASC",
                " LIMIT 1",
            )))
            .bind(&device)
            .bind(&user)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
            found = read(first)?;
        }
        Ok(found)
    }

    /// Stores a login nonce for the device. In the same transaction, expired nonces (of
    /// every device) go, and of this device's live ones only the newest `keep - 1` stay, so
    /// the public challenge route cannot grow the table without bound.
    pub async fn insert_nonce(
        &self,
        nonce: &str,
        device_id: Uuid,
        expires_at_ms: i64,
        now_ms: i64,
        keep: usize,
    ) -> Result<(), ServerError> {
        let device = device_id.to_string();
        let older = i64::try_from(keep.saturating_sub(1)).unwrap_or(i64::MAX);
        let mut tx = self.tx().await?;
        sqlx::query("DELETE FROM login_nonces WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM login_nonces WHERE nonce IN (
               SELECT nonce FROM login_nonces WHERE device_id = $1
               ORDER BY expires_at_ms DESC, nonce LIMIT 1000000 OFFSET $2)",
        )
        .bind(&device)
        .bind(older)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO login_nonces (nonce, device_id, expires_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(nonce)
        .bind(&device)
        .bind(expires_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Consumes a nonce issued to this device; true if it existed and had not expired.
    pub async fn take_nonce(
        &self,
        nonce: &str,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<bool, ServerError> {
        let row = sqlx::query(
            "DELETE FROM login_nonces WHERE nonce = $1 AND device_id = $2 RETURNING expires_at_ms",
        )
        .bind(nonce)
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) > now_ms))
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        user: &UserInfo,
        device_id: Uuid,
        now_ms: i64,
        recovery: bool,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, clinic_id, device_id, created_at_ms, last_seen_at_ms, role, recovery)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token_hash)
        .bind(user.user_id.to_string())
        .bind(user.clinic_id.to_string())
        .bind(device_id.to_string())
        .bind(now_ms)
        .bind(now_ms)
        .bind(user.role.as_str())
        .bind(i64::from(recovery))
        .execute(&self.pool)
        .await?;
        // At most MAX_SESSIONS_PER_USER live sessions: the oldest go. Sessions opened in the
        // same millisecond are ordered by insertion (SQLite's rowid, PostgreSQL's seq).
        let insertion = match self.backend {
            Backend::Sqlite => "rowid",
            Backend::Postgres => "seq",
        };
        // The only text spliced in is one of the two column names above.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sessions SET revoked_at_ms = $1
             WHERE user_id = $2 AND revoked_at_ms IS NULL AND token_hash NOT IN (
                 SELECT token_hash FROM sessions WHERE user_id = $2 AND revoked_at_ms IS NULL
                 ORDER BY created_at_ms DESC, {insertion} DESC LIMIT $3)"
        )))
        .bind(now_ms)
        .bind(user.user_id.to_string())
        .bind(MAX_SESSIONS_PER_USER)
        .execute(&self.pool)
        .await?;
        sqlx::query("UPDATE devices SET last_seen_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(device_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, ServerError> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, s.clinic_id, s.device_id,
                    s.created_at_ms, s.last_seen_at_ms, s.revoked_at_ms IS NOT NULL OR u.active = 0,
                    d.revoked_at_ms IS NOT NULL, c.idle_timeout_secs, s.recovery
             FROM sessions s
             JOIN users u ON u.id = s.user_id AND u.clinic_id = s.clinic_id
             JOIN devices d ON d.id = s.device_id AND d.clinic_id = s.clinic_id
             JOIN clinics c ON c.id = s.clinic_id
             WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            user: UserInfo {
                user_id: parse_uuid(&row.get::<String, _>(0))?,
                username: row.get(1),
                display_name: row.get(2),
                role: parse_role(&row.get::<String, _>(3))?,
                clinic_id: parse_uuid(&row.get::<String, _>(4))?,
            },
            device_id: parse_uuid(&row.get::<String, _>(5))?,
            created_at_ms: row.get(6),
            last_seen_at_ms: row.get(7),
            revoked: flag(&row, 8)?,
            device_revoked: flag(&row, 9)?,
            idle_timeout_secs: u64::try_from(row.get::<i64, _>(10)).unwrap_or(0),
            recovery: row.get::<i64, _>(11) != 0,
        }))
    }

    pub async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> Result<(), ServerError> {
        sqlx::query(
            "UPDATE sessions SET revoked_at_ms = $1 WHERE token_hash = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes a session's last-seen time on its own ([`touch_statement`]).
    pub async fn touch_session(&self, token_hash: &str, at_ms: i64) -> Result<(), ServerError> {
        touch_statement(token_hash, at_ms)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// The write of a session's last-seen time, for a transaction to carry (the audit recorder
/// carries it with a request's event). Never backwards: a slow request that began earlier
/// may finish after a later one.
pub(crate) fn touch_statement(token_hash: &str, at_ms: i64) -> Statement {
    let mut st =
        Statement::new("UPDATE sessions SET last_seen_at_ms = CASE WHEN last_seen_at_ms > ");
    st.bind(at_ms)
        .push(" THEN last_seen_at_ms ELSE ")
        .bind(at_ms)
        .push(" END WHERE token_hash = ")
        .bind(token_hash);
    st
}

/// Ends every session and second-factor grant of the user, inside the caller's transaction
/// (a password, role or second factor that changed).
pub async fn end_user_sessions(
    conn: &mut AnyConnection,
    user_id: Uuid,
    now_ms: i64,
) -> Result<(), ServerError> {
    for sql in [
        "UPDATE mfa_grants SET revoked_at_ms = $1 WHERE user_id = $2 AND revoked_at_ms IS NULL",
        "UPDATE sessions SET revoked_at_ms = $1 WHERE user_id = $2 AND revoked_at_ms IS NULL",
    ] {
        sqlx::query(sql)
            .bind(now_ms)
            .bind(user_id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
