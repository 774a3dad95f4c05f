//! Second factors (migration 0005): the tables `mfa_tickets` (login tickets and their
//! ceremony state), `mfa_totp`, `mfa_webauthn`, `mfa_recovery_codes` and `mfa_grants`. Writes
//! that must happen together take a connection inside the caller's transaction.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Prove a factor the user has.
    Verify,
    /// Set up the user's first factor.
    Setup,
    /// Replace a password someone else chose before any second factor step.
    Password,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Setup => "setup",
            Purpose::Password => "password",
        }
    }
}

/// A live ticket of an active user on a non-revoked device.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub hash: String,
    pub user: UserInfo,
    pub device_id: Uuid,
    pub purpose: Purpose,
    /// Opened by a recovery sign-in (the device proof signed by the recovery key): the
    /// session it leads to may have the escrowed device secret released.
    pub recovery: bool,
    /// Ceremony state: `totp:<sealed secret>` or `webauthn-reg:`/`webauthn-auth:<json>`.
    pub pending: Option<String>,
}

/// Which kinds of factor a user has stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factors {
    pub totp: bool,
    pub webauthn: bool,
    /// At least one recovery code not yet used.
    pub recovery_codes: bool,
}

/// A user's TOTP factor as stored.
#[derive(Debug, Clone)]
pub struct StoredTotp {
    /// The secret, sealed under the server's MFA key.
    pub sealed: String,
    /// The last step accepted; only a later one is accepted next.
    pub last_step: i64,
}

impl Store {
    /// Which kinds of factor the user (of the scope's clinic) has stored.
    pub async fn factors(
        &self,
        scope: &ClinicScope,
        user_id: Uuid,
    ) -> Result<Factors, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1),
                EXISTS (SELECT 1 FROM mfa_webauthn WHERE user_id = $1),
                EXISTS (SELECT 1 FROM mfa_recovery_codes WHERE user_id = $1 AND used_at_ms IS NULL)",
        )
        .bind(user_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Factors {
            totp: flag(&row, 0)?,
            webauthn: flag(&row, 1)?,
            recovery_codes: flag(&row, 2)?,
        })
    }

    pub async fn insert_ticket(
        &self,
        hash: &str,
        user: &UserInfo,
        device_id: Uuid,
        purpose: Purpose,
        recovery: bool,
        expires_at_ms: i64,
    ) -> Result<(), ServerError> {
        sqlx::query(
            "INSERT INTO mfa_tickets (ticket_hash, user_id, clinic_id, device_id, purpose, expires_at_ms, recovery)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash)
        .bind(user.user_id.to_string())
        .bind(user.clinic_id.to_string())
        .bind(device_id.to_string())
        .bind(purpose.as_str())
        .bind(expires_at_ms)
        .bind(i64::from(recovery))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The ticket, if it is unexpired and its user and device may still sign in.
    pub async fn ticket(&self, hash: &str, now_ms: i64) -> Result<Option<Ticket>, ServerError> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, t.clinic_id, t.device_id, t.purpose,
                t.pending, t.recovery
         FROM mfa_tickets t
         JOIN users u ON u.id = t.user_id AND u.clinic_id = t.clinic_id
         JOIN devices d ON d.id = t.device_id AND d.clinic_id = t.clinic_id
         WHERE t.ticket_hash = $1 AND t.expires_at_ms > $2 AND u.active = 1
           AND d.revoked_at_ms IS NULL",
        )
        .bind(hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let purpose = match row.get::<&str, _>(6) {
            "verify" => Purpose::Verify,
            "setup" => Purpose::Setup,
            "password" => Purpose::Password,
            _ => return Err(ServerError::Internal("stored ticket purpose unknown")),
        };
        Ok(Some(Ticket {
            hash: hash.to_owned(),
            user: UserInfo {
                user_id: parse_uuid(row.get(0))?,
                username: row.get(1),
                display_name: row.get(2),
                role: parse_role(row.get(3))?,
                clinic_id: parse_uuid(row.get(4))?,
            },
            device_id: parse_uuid(row.get(5))?,
            purpose,
            pending: row.get(7),
            recovery: row.get::<i64, _>(8) != 0,
        }))
    }

    /// Keeps a ceremony's state in the ticket.
    pub async fn set_ticket_pending(&self, hash: &str, pending: &str) -> Result<(), ServerError> {
        sqlx::query("UPDATE mfa_tickets SET pending = $1 WHERE ticket_hash = $2")
            .bind(pending)
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts an answer against the ticket before it is checked; `false` once the ticket
    /// has had `max_failures` (the answers still being checked count too).
    pub async fn reserve_ticket_answer(
        &self,
        hash: &str,
        max_failures: i64,
    ) -> Result<bool, ServerError> {
        let done = sqlx::query(
            "UPDATE mfa_tickets SET failures = failures + 1
             WHERE ticket_hash = $1 AND failures < $2",
        )
        .bind(hash)
        .bind(max_failures)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the ticket if its answers have reached `max_failures` (the last was wrong).
    pub async fn burn_spent_ticket(
        &self,
        hash: &str,
        max_failures: i64,
    ) -> Result<(), ServerError> {
        sqlx::query("DELETE FROM mfa_tickets WHERE ticket_hash = $1 AND failures >= $2")
            .bind(hash)
            .bind(max_failures)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user's sealed TOTP secret and the last step accepted.
    pub async fn totp(
        &self,
        scope: &ClinicScope,
        user_id: Uuid,
    ) -> Result<Option<StoredTotp>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let row = sqlx::query("SELECT secret_sealed, last_step FROM mfa_totp WHERE user_id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.map(|r| StoredTotp {
            sealed: r.get(0),
            last_step: r.get(1),
        }))
    }

    /// The user's WebAuthn credentials as stored (JSON).
    pub async fn passkeys(
        &self,
        scope: &ClinicScope,
        user_id: Uuid,
    ) -> Result<Vec<String>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let passkeys = sqlx::query_scalar(
            "SELECT passkey_json FROM mfa_webauthn WHERE user_id = $1 ORDER BY created_at_ms",
        )
        .bind(user_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(passkeys)
    }

    /// Whether the grant is live for this user on this device.
    pub async fn grant_valid(
        &self,
        hash: &str,
        user_id: Uuid,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<bool, ServerError> {
        let row = sqlx::query(
            "SELECT 1 FROM mfa_grants WHERE grant_hash = $1 AND user_id = $2
           AND device_id = $3 AND expires_at_ms > $4 AND revoked_at_ms IS NULL",
        )
        .bind(hash)
        .bind(user_id.to_string())
        .bind(device_id.to_string())
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

/// Uses the ticket up; false if another request already did.
pub async fn consume_ticket(conn: &mut AnyConnection, hash: &str) -> Result<bool, ServerError> {
    let done = sqlx::query("DELETE FROM mfa_tickets WHERE ticket_hash = $1")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the replay mark to `step`; false if a request already used this step or a later one.
pub async fn advance_totp_step(
    conn: &mut AnyConnection,
    user_id: Uuid,
    step: i64,
) -> Result<bool, ServerError> {
    let done =
        sqlx::query("UPDATE mfa_totp SET last_step = $1 WHERE user_id = $2 AND last_step < $3")
            .bind(step)
            .bind(user_id.to_string())
            .bind(step)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the user's TOTP factor; `conflict` on `mfa` if they have one already.
pub async fn insert_totp(
    conn: &mut AnyConnection,
    user: &UserInfo,
    sealed: &str,
    step: i64,
    now_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO mfa_totp (user_id, clinic_id, secret_sealed, last_step, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user.user_id.to_string())
    .bind(user.clinic_id.to_string())
    .bind(sealed)
    .bind(step)
    .bind(now_ms)
    .execute(conn)
    .await
    .map_err(conflict_if_unique("mfa"))?;
    Ok(())
}

/// Stores a WebAuthn credential; `conflict` on `credential` if it is stored already.
pub async fn insert_passkey(
    conn: &mut AnyConnection,
    user: &UserInfo,
    credential_id: &str,
    passkey_json: &str,
    now_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO mfa_webauthn (credential_id, user_id, clinic_id, passkey_json, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(credential_id)
    .bind(user.user_id.to_string())
    .bind(user.clinic_id.to_string())
    .bind(passkey_json)
    .bind(now_ms)
    .execute(conn)
    .await
    .map_err(conflict_if_unique("credential"))?;
    Ok(())
}

pub async fn update_passkey(
    conn: &mut AnyConnection,
    user_id: Uuid,
    credential_id: &str,
    passkey_json: &str,
) -> Result<(), ServerError> {
    sqlx::query(
        "UPDATE mfa_webauthn SET passkey_json = $1 WHERE credential_id = $2 AND user_id = $3",
    )
    .bind(passkey_json)
    .bind(credential_id)
    .bind(user_id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the user's recovery codes (hashes) with a new set.
pub async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    user: &UserInfo,
    hashes: &[String],
) -> Result<(), ServerError> {
    sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
        .bind(user.user_id.to_string())
        .execute(&mut *conn)
        .await?;
    for hash in hashes {
        sqlx::query(
            "INSERT INTO mfa_recovery_codes (code_hash, user_id, clinic_id) VALUES ($1, $2, $3)",
        )
        .bind(hash)
        .bind(user.user_id.to_string())
        .bind(user.clinic_id.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Spends one of the user's unused recovery codes; false if it is not one.
pub async fn use_recovery_code(
    conn: &mut AnyConnection,
    user_id: Uuid,
    hash: &str,
    now_ms: i64,
) -> Result<bool, ServerError> {
    let done = sqlx::query(
        "UPDATE mfa_recovery_codes SET used_at_ms = $1
         WHERE code_hash = $2 AND user_id = $3 AND used_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(hash)
    .bind(user_id.to_string())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_grant(
    conn: &mut AnyConnection,
    hash: &str,
    user: &UserInfo,
    device_id: Uuid,
    expires_at_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO mfa_grants (grant_hash, user_id, clinic_id, device_id, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(user.user_id.to_string())
    .bind(user.clinic_id.to_string())
    .bind(device_id.to_string())
    .bind(expires_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes every factor, code and ticket of the user and revokes their grants and
/// sessions: the next sign-in sets up a factor again.
pub async fn reset_factors(
    conn: &mut AnyConnection,
    user_id: Uuid,
    now_ms: i64,
) -> Result<(), ServerError> {
    let user = user_id.to_string();
    for sql in [
        "DELETE FROM mfa_totp WHERE user_id = $1",
        "DELETE FROM mfa_webauthn WHERE user_id = $1",
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        "DELETE FROM mfa_tickets WHERE user_id = $1",
    ] {
        sqlx::query(sql).bind(&user).execute(&mut *conn).await?;
    }
    super::sessions::end_user_sessions(conn, user_id, now_ms).await
}
