//! Practitioners' working hours (`working_hours`: each one's week as JSON text) and the
//! times their appointments hold. What a week may hold is `crate::clinical::hours`'s
//! business.

use super::*;

/// The practitioner's week as stored, if it was ever set.
pub async fn periods(
    tx: &mut ClinicTx,
    practitioner_id: Uuid,
) -> Result<Option<String>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    Ok(sqlx::query_scalar(
        "SELECT periods FROM working_hours WHERE clinic_id = $1 AND practitioner_id = $2",
    )
    .bind(clinic)
    .bind(practitioner_id.to_string())
    .fetch_optional(&mut **tx)
    .await?)
}

/// Replaces the practitioner's week.
pub async fn set_periods(
    tx: &mut ClinicTx,
    practitioner_id: Uuid,
    periods: &str,
    now_ms: i64,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO working_hours (clinic_id, practitioner_id, periods, updated_at_ms)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (clinic_id, practitioner_id)
         DO UPDATE SET periods = excluded.periods, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(clinic)
    .bind(practitioner_id.to_string())
    .bind(periods)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The `[start, end)` times (UTC milliseconds) of the practitioner's appointments that hold
/// their time (booked, arrived, checked in) and overlap `[from_ms, to_ms)`.
pub async fn held(
    tx: &mut ClinicTx,
    practitioner_id: Uuid,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, i64)>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT starts_at_ms, starts_at_ms + duration_mins * 60000 FROM appointments
         WHERE clinic_id = $1 AND practitioner_id = $2
           AND status IN ('booked', 'arrived', 'checked-in')
           AND starts_at_ms < $4 AND starts_at_ms + duration_mins * 60000 > $3
         ORDER BY starts_at_ms",
    )
    .bind(clinic)
    .bind(practitioner_id.to_string())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
