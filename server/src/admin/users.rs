//! The clinic's users as its admins manage them: list, create, change a role, deactivate.
//! A change of role or deactivation ends the user's sessions and second-factor grants at
//! once, so the change takes effect on their next request.

use clinicdesk_protocol::mfa::MfaMethod;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{NewUser, UserSummary};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::{Store, flag, parse_role, parse_uuid};

/// The clinic's users, active first, then by username.
pub async fn list(store: &Store, scope: &ClinicScope) -> Result<Vec<UserSummary>, ServerError> {
    let rows = sqlx::query(
        "SELECT u.id, u.username, u.display_name, u.role, u.active,
                EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id),
                EXISTS (SELECT 1 FROM mfa_webauthn w WHERE w.user_id = u.id),
                u.must_change_password
         FROM users u WHERE u.clinic_id = $1
         ORDER BY u.active DESC, u.username",
    )
    .bind(scope.clinic_id().to_string())
    .fetch_all(store.pool())
    .await?;
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

/// A username is 3 to 40 of `a-z 0-9 . _ -`; a display name 1 to 80 printable characters.
pub fn validate(new: &NewUser) -> Result<(), ServerError> {
    validate_username(&new.username, "username")?;
    validate_display_name(&new.display_name, "display_name")
}

/// 3 to 40 lowercase letters, digits, `.`, `_` or `-`.
pub fn validate_username(username: &str, field: &'static str) -> Result<(), ServerError> {
    let ok = (3..=40).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ServerError::BadRequest { field })
    }
}

/// Not blank, at most 80 characters, no control characters.
pub fn validate_display_name(name: &str, field: &'static str) -> Result<(), ServerError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(ServerError::BadRequest { field });
    }
    Ok(())
}

/// How long a first password (chosen by an admin or the operator) works: 72 hours.
pub const FIRST_PASSWORD_TTL_MS: i64 = 72 * 60 * 60 * 1000;

/// Adds a user whose password someone else chose: it signs them in once, to choose their
/// own, until `first_password_expires_at_ms`.
pub async fn insert(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    new: &NewUser,
    password_hash: &str,
    first_password_expires_at_ms: i64,
) -> Result<UserSummary, ServerError> {
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO users (id, clinic_id, username, display_name, role, password_hash,
                            must_change_password, password_expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
    )
    .bind(id.to_string())
    .bind(scope.clinic_id().to_string())
    .bind(&new.username)
    .bind(new.display_name.trim())
    .bind(new.role.as_str())
    .bind(password_hash)
    .bind(first_password_expires_at_ms)
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(UserSummary {
            user_id: id,
            username: new.username.clone(),
            display_name: new.display_name.trim().to_owned(),
            role: new.role,
            active: true,
            mfa: Vec::new(),
            first_password_pending: true,
        }),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(ServerError::Conflict { field: "username" })
        }
        Err(e) => Err(e.into()),
    }
}

/// What an admin changes about another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Role(Role),
    Deactivate,
}

/// Applies `change` to a user of the clinic and ends their sessions and grants; false if
/// there is no such user.
pub async fn apply(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user_id: Uuid,
    change: Change,
    now_ms: i64,
) -> Result<bool, ServerError> {
    let query = match change {
        Change::Role(role) => {
            sqlx::query("UPDATE users SET role = $1 WHERE id = $2 AND clinic_id = $3")
                .bind(role.as_str())
        }
        Change::Deactivate => {
            sqlx::query("UPDATE users SET active = 0 WHERE id = $1 AND clinic_id = $2")
        }
    };
    let found = query
        .bind(user_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1;
    if found {
        end_sessions(conn, user_id, now_ms).await?;
    }
    Ok(found)
}

/// Stores a new password hash for the user and ends their sessions and grants.
pub async fn set_password(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    user_id: Uuid,
    password_hash: &str,
    now_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "UPDATE users SET password_hash = $1, must_change_password = 0,
                          password_expires_at_ms = NULL
         WHERE id = $2 AND clinic_id = $3",
    )
    .bind(password_hash)
    .bind(user_id.to_string())
    .bind(scope.clinic_id().to_string())
    .execute(&mut *conn)
    .await?;
    end_sessions(conn, user_id, now_ms).await
}

/// Ends every session and second-factor grant of the user.
pub async fn end_sessions(
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
