//! Provisionings (the `provisionings` table): one row per idempotency key of a clinic the
//! operator provisioned, so a retry answers for the same clinic.

use super::*;

/// What the provisioning under a key stored, with whether its admin still has to choose
/// their own password.
pub struct Provisioning {
    pub request_hash: String,
    pub clinic_id: Uuid,
    pub admin_user_id: Uuid,
    pub admin_first_password_pending: bool,
}

/// Whether a provisioning holds the key.
pub async fn key_taken(conn: &mut AnyConnection, key: &str) -> Result<bool, ServerError> {
    let taken: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM provisionings WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(conn)
            .await?;
    Ok(taken.is_some())
}

/// Records the key's provisioning; false if another one holds the key.
pub async fn insert(
    conn: &mut AnyConnection,
    key: &str,
    request_hash: &str,
    clinic_id: Uuid,
    admin_user_id: Uuid,
    now_ms: i64,
) -> Result<bool, ServerError> {
    let recorded = sqlx::query(
        "INSERT INTO provisionings (idempotency_key, request_hash, clinic_id, admin_user_id, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(key)
    .bind(request_hash)
    .bind(clinic_id.to_string())
    .bind(admin_user_id.to_string())
    .bind(now_ms)
    .execute(conn)
    .await;
    match recorded {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes the key's row unchanged, so that the transaction holds the write lock (SQLite)
/// or the row's lock (PostgreSQL) before it reads anything.
pub async fn lock_key(conn: &mut AnyConnection, key: &str) -> Result<(), ServerError> {
    sqlx::query(
        "UPDATE provisionings SET created_at_ms = created_at_ms WHERE idempotency_key = $1",
    )
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// The provisioning under the key, if any.
pub async fn by_key(
    conn: &mut AnyConnection,
    key: &str,
) -> Result<Option<Provisioning>, ServerError> {
    let row = sqlx::query(
        "SELECT p.request_hash, p.clinic_id, p.admin_user_id, u.must_change_password
         FROM provisionings p JOIN users u ON u.id = p.admin_user_id
         WHERE p.idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Provisioning {
        request_hash: row.get(0),
        clinic_id: parse_uuid(row.get(1))?,
        admin_user_id: parse_uuid(row.get(2))?,
        admin_first_password_pending: flag(&row, 3)?,
    }))
}
