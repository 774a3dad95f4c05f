//! Enrollment codes (the `enrollment_codes` table): one-time codes that let a workstation
//! register, stored as hashes, issued by an admin or on the operator's console.

use super::*;

/// An enrollment code redeemed in the caller's transaction: the clinic it was for and who
/// issued it (`None`: the operator's console). Built only by [`redeem`].
#[derive(Debug)]
pub struct RedeemedCode {
    pub clinic_id: Uuid,
    pub issued_by: Option<Uuid>,
}

/// Stores a code's hash; `issued_by` is the admin who asked for it (none from the
/// operator's console or provisioning). The one place a code is written.
pub async fn insert_code(
    conn: &mut AnyConnection,
    clinic_id: Uuid,
    code_hash: &str,
    expires_at_ms: i64,
    issued_by: Option<Uuid>,
) -> Result<(), ServerError> {
    sqlx::query(
        "INSERT INTO enrollment_codes (code_hash, clinic_id, expires_at_ms, issued_by)
             VALUES ($1, $2, $3, $4)",
    )
    .bind(code_hash)
    .bind(clinic_id.to_string())
    .bind(expires_at_ms)
    .bind(issued_by.map(|u| u.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the code used; `None` if it is unknown, used or expired.
pub async fn redeem(
    conn: &mut AnyConnection,
    code_hash: &str,
    now_ms: i64,
) -> Result<Option<RedeemedCode>, ServerError> {
    let claimed = sqlx::query(
        "UPDATE enrollment_codes SET used_at_ms = $1
             WHERE code_hash = $2 AND used_at_ms IS NULL AND expires_at_ms > $3
             RETURNING clinic_id, issued_by",
    )
    .bind(now_ms)
    .bind(code_hash)
    .bind(now_ms)
    .fetch_optional(conn)
    .await?;
    let Some(row) = claimed else {
        return Ok(None);
    };
    let issued_by: Option<String> = row.get(1);
    Ok(Some(RedeemedCode {
        clinic_id: parse_uuid(&row.get::<String, _>(0))?,
        issued_by: issued_by.as_deref().map(parse_uuid).transpose()?,
    }))
}

/// Ends the clinic's unused codes from the operator's console or provisioning (not an
/// admin's), for a code that replaces them.
pub async fn retire_console_codes(
    conn: &mut AnyConnection,
    clinic_id: Uuid,
    now_ms: i64,
) -> Result<(), ServerError> {
    sqlx::query(
        "UPDATE enrollment_codes SET used_at_ms = $1
         WHERE clinic_id = $2 AND used_at_ms IS NULL AND issued_by IS NULL",
    )
    .bind(now_ms)
    .bind(clinic_id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}
