//! What workstations say their users' offline copies hold (`offline_copies`): counts of
//! patients and days per workstation and user, never who. Reported by the app after each
//! refresh of a copy, and as nothing when it signs its user out (which deletes the copy):
//! then the row goes.

use super::*;

/// One workstation's copies together: how many users hold one, how many patients they
/// hold in all, and when the last of them was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub users: i64,
    pub patients: i64,
    pub reported_at_ms: i64,
}

/// Replaces what `user_id`'s copy on `device_id` holds.
pub async fn report(
    tx: &mut ClinicTx,
    device_id: Uuid,
    user_id: Uuid,
    patients: i64,
    days: i64,
    now_ms: i64,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO offline_copies (clinic_id, device_id, user_id, patients, days, reported_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (device_id, user_id) DO UPDATE SET patients = excluded.patients,
             days = excluded.days, reported_at_ms = excluded.reported_at_ms",
    )
    .bind(clinic)
    .bind(device_id.to_string())
    .bind(user_id.to_string())
    .bind(patients)
    .bind(days)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets `user_id`'s copy on `device_id` (they signed out there, which removes it).
pub async fn forget(tx: &mut ClinicTx, device_id: Uuid, user_id: Uuid) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "DELETE FROM offline_copies WHERE clinic_id = $1 AND device_id = $2 AND user_id = $3",
    )
    .bind(clinic)
    .bind(device_id.to_string())
    .bind(user_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Each of the clinic's workstations that reported a copy, with what its copies hold.
pub async fn by_workstation(tx: &mut ClinicTx) -> Result<Vec<(Uuid, Held)>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    // CAST: PostgreSQL sums BIGINT as NUMERIC, which the Any driver does not read.
    let rows = sqlx::query(
        "SELECT device_id, COUNT(*), CAST(SUM(patients) AS BIGINT), MAX(reported_at_ms)
         FROM offline_copies WHERE clinic_id = $1 GROUP BY device_id",
    )
    .bind(clinic)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                parse_uuid(r.get(0))?,
                Held {
                    users: r.get(1),
                    patients: r.get(2),
                    reported_at_ms: r.get(3),
                },
            ))
        })
        .collect()
}
