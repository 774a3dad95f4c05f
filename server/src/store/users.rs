//! Users of a clinic: accounts, roles, login credentials and first passwords; and the end
//! of a user's sessions and second-factor grants.

use clinicdesk_protocol::mfa::MfaMethod;
use clinicdesk_protocol::wire::UserSummary;

use super::*;

/// A user's login record. The password hash never leaves the auth module.
#[derive(Clone)]
pub struct Credentials {
    pub info: UserInfo,
    pub password_hash: String,
    pub active: bool,
    /// The password was chosen by someone else: it works once, to choose one's own.
    pub must_change_password: bool,
    /// When a first password stops working (`None`: never).
    pub password_expires_at_ms: Option<i64>,
}

// The admins' management of a clinic's users, first passwords and the end of a user's
// sessions. User rows are not under row-level security: these take the caller's
// transaction (any kind) and the scope that names the clinic.

/// A user whose first password someone else chose (an admin, or provisioning for a clinic's
/// first admin): it signs them in once, to choose their own, until `expires_at_ms`.
pub struct FirstPasswordUser<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    pub expires_at_ms: i64,
}

impl Store {
    /// The clinic's users, active first, then by username.
    pub async fn clinic_users(&self, scope: &ClinicScope) -> Result<Vec<UserSummary>, ServerError> {
        // In the clinic's transaction: the second factors are behind its wall.
        let mut tx = self.clinic_tx(scope).await?;
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, u.active,
                EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id),
                EXISTS (SELECT 1 FROM mfa_webauthn w WHERE w.user_id = u.id),
                u.must_change_password
         FROM users u WHERE u.clinic_id = $1
         ORDER BY u.active DESC, u.username",
        )
        .bind(scope.clinic_id().to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let mut mfa = Vec::new();
                if flag(r, 5)? {
                    mfa.push(MfaMethod::Totp);
                }
                if flag(r, 6)? {
                    mfa.push(MfaMethod::Webauthn);
                }
                Ok(UserSummary {
                    user_id: parse_uuid(r.get(0))?,
                    username: r.get(1),
                    display_name: r.get(2),
                    role: parse_role(r.get(3))?,
                    active: flag(r, 4)?,
                    mfa,
                    first_password_pending: flag(r, 7)?,
                })
            })
            .collect()
    }
}

/// Adds `user` to the scope's clinic; `Conflict` on `username` if the clinic has one so named.
pub async fn insert_with_first_password(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user: &FirstPasswordUser<'_>,
) -> Result<(), ServerError> {
    let inserted = sqlx::query(
        "INSERT INTO users (id, clinic_id, username, display_name, role, password_hash,
                            must_change_password, password_expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
    )
    .bind(user.id.to_string())
    .bind(scope.clinic_id().to_string())
    .bind(user.username)
    .bind(user.display_name)
    .bind(user.role.as_str())
    .bind(user.password_hash)
    .bind(user.expires_at_ms)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(ServerError::Conflict { field: "username" })
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives a user of the scope's clinic another role; false if the clinic has no such user.
pub async fn set_role(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user_id: Uuid,
    role: Role,
) -> Result<bool, ServerError> {
    let done = sqlx::query("UPDATE users SET role = $1 WHERE id = $2 AND clinic_id = $3")
        .bind(role.as_str())
        .bind(user_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that the scope's admin gave `user_id` the role `role` at `at_ms`, in the caller's
/// transaction (which must name the clinic: the table is behind the wall on PostgreSQL).
pub async fn record_role_change(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user_id: Uuid,
    role: Role,
    at_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO role_changes (clinic_id, user_id, role, changed_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(scope.clinic_id().to_string())
    .bind(user_id.to_string())
    .bind(role.as_str())
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// A user's role as an admin set it, from `at_ms` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    pub at_ms: i64,
    pub role: Role,
}

impl Store {
    /// The role changes of `user` in the scope's clinic made from `from_ms` to `to_ms`,
    /// oldest first.
    pub async fn role_changes(
        &self,
        scope: &ClinicScope,
        user: Uuid,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RoleChange>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let rows = sqlx::query(
            "SELECT changed_at_ms, role FROM role_changes
             WHERE user_id = $1 AND clinic_id = $2 AND changed_at_ms >= $3 AND changed_at_ms <= $4
             ORDER BY changed_at_ms",
        )
        .bind(user.to_string())
        .bind(scope.clinic_id().to_string())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(RoleChange {
                    at_ms: r.get(0),
                    role: parse_role(r.get(1))?,
                })
            })
            .collect()
    }
}

/// Deactivates a user of the scope's clinic; false if the clinic has no such user.
pub async fn deactivate(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user_id: Uuid,
) -> Result<bool, ServerError> {
    let done = sqlx::query("UPDATE users SET active = 0 WHERE id = $1 AND clinic_id = $2")
        .bind(user_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the user's own new password: a first password stops being pending.
pub async fn set_password(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user_id: Uuid,
    password_hash: &str,
) -> Result<(), ServerError> {
    sqlx::query(
        "UPDATE users SET password_hash = $1, must_change_password = 0,
                          password_expires_at_ms = NULL
         WHERE id = $2 AND clinic_id = $3",
    )
    .bind(password_hash)
    .bind(user_id.to_string())
    .bind(scope.clinic_id().to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the first password of a user who has not yet chosen their own (a retried
/// provisioning); a user who has is left alone.
pub async fn renew_first_password(
    conn: &mut AnyConnection,
    user_id: Uuid,
    password_hash: &str,
    expires_at_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "UPDATE users SET password_hash = $1, password_expires_at_ms = $2
         WHERE id = $3 AND must_change_password = 1",
    )
    .bind(password_hash)
    .bind(expires_at_ms)
    .bind(user_id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    pub async fn upsert_user(
        &self,
        clinic_id: Uuid,
        username: &str,
        display_name: &str,
        role: Role,
        password_hash: &str,
    ) -> Result<Uuid, ServerError> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (id, clinic_id, username, display_name, role, password_hash)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (clinic_id, username) DO UPDATE SET
               display_name = excluded.display_name, role = excluded.role,
               password_hash = excluded.password_hash",
        )
        .bind(id.to_string())
        .bind(clinic_id.to_string())
        .bind(username)
        .bind(display_name)
        .bind(role.as_str())
        .bind(password_hash)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id FROM users WHERE clinic_id = $1 AND username = $2")
            .bind(clinic_id.to_string())
            .bind(username)
            .fetch_one(&self.pool)
            .await?;
        parse_uuid(&row.get::<String, _>(0))
    }

    /// A user's role, for recording what they did.
    pub async fn user_role(&self, user_id: Uuid) -> Result<Option<Role>, ServerError> {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        role.as_deref().map(parse_role).transpose()
    }

    pub async fn credentials(
        &self,
        clinic_id: Uuid,
        username: &str,
    ) -> Result<Option<Credentials>, ServerError> {
        let row = sqlx::query(
            "SELECT id, display_name, role, password_hash, active, must_change_password,
                    password_expires_at_ms
             FROM users WHERE clinic_id = $1 AND username = $2",
        )
        .bind(clinic_id.to_string())
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Credentials {
            info: UserInfo {
                user_id: parse_uuid(&row.get::<String, _>(0))?,
                username: username.to_owned(),
                display_name: row.get(1),
                role: parse_role(&row.get::<String, _>(2))?,
                clinic_id,
            },
            password_hash: row.get(3),
            active: flag(&row, 4)?,
            must_change_password: flag(&row, 5)?,
            password_expires_at_ms: row.get(6),
        }))
    }

    pub async fn is_clinic_user(
        &self,
        scope: &ClinicScope,
        user_id: Uuid,
    ) -> Result<bool, ServerError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE id = $1 AND clinic_id = $2")
            .bind(user_id.to_string())
            .bind(scope.clinic_id().to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
