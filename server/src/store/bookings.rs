//! Appointments as records (`appointments`: the stored content, its version and the
//! columns derived from it) and the encounters their check-ins open (`encounters`). What
//! a booking may be is `crate::clinical::booking`'s business; here are the statements.

use super::records::StoredRecord;
use super::*;

/// An appointment as stored: its content and version, and the columns (for a row stored
/// before the record layer, version 0, the columns are all there is).
pub struct StoredAppointment {
    pub record: StoredRecord,
    pub patient_id: Uuid,
    pub practitioner_id: Option<Uuid>,
    pub starts_at_ms: i64,
    pub duration_mins: i64,
    pub reason: String,
    pub status: String,
    pub encounter_id: Option<Uuid>,
}

/// The columns derived from an appointment's content.
pub struct Columns<'a> {
    pub patient_id: Uuid,
    pub practitioner_id: Uuid,
    pub starts_at_ms: i64,
    pub duration_mins: i64,
    pub reason: &'a str,
    pub status: &'a str,
}

/// The clinic's appointment; another clinic's is `None`, like a missing one.
pub async fn appointment(
    tx: &mut ClinicTx,
    id: Uuid,
) -> Result<Option<StoredAppointment>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT a.version, a.record, a.patient_id, a.practitioner_id, a.starts_at_ms,
             a.duration_mins, a.reason, a.status, e.id
         FROM appointments a
         LEFT JOIN encounters e ON e.appointment_id = a.id AND e.clinic_id = a.clinic_id
         WHERE a.id = $1 AND a.clinic_id = $2",
    )
    .bind(id.to_string())
    .bind(clinic)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(|r| stored_appointment(r, 0)).transpose()
}

/// An appointment from the columns of [`appointment`]'s query, starting at `first`.
fn stored_appointment(row: &AnyRow, first: usize) -> Result<StoredAppointment, ServerError> {
    let opt_uuid = |i: usize| {
        row.get::<Option<String>, _>(first + i)
            .as_deref()
            .map(parse_uuid)
            .transpose()
    };
    Ok(StoredAppointment {
        record: StoredRecord {
            version: u64::try_from(row.get::<i64, _>(first))
                .map_err(|_| ServerError::Internal("stored version negative"))?,
            body: row.get(first + 1),
        },
        patient_id: parse_uuid(&row.get::<String, _>(first + 2))?,
        practitioner_id: opt_uuid(3)?,
        starts_at_ms: row.get(first + 4),
        duration_mins: row.get(first + 5),
        reason: row.get(first + 6),
        status: row.get(first + 7),
        encounter_id: opt_uuid(8)?,
    })
}

/// Every appointment of the clinic, by id: each one's id and content (for `audit verify`).
pub async fn of_clinic(tx: &mut ClinicTx) -> Result<Vec<(Uuid, StoredAppointment)>, ServerError> {
    listed(tx, None).await
}

/// The patient's appointments, earliest first: each one's id and content.
pub async fn of_patient(
    tx: &mut ClinicTx,
    patient_id: Uuid,
) -> Result<Vec<(Uuid, StoredAppointment)>, ServerError> {
    listed(tx, Some(patient_id)).await
}

/// The clinic's appointments, or one patient's, with their encounters.
async fn listed(
    tx: &mut ClinicTx,
    patient_id: Option<Uuid>,
) -> Result<Vec<(Uuid, StoredAppointment)>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let which = match patient_id {
        Some(_) => "AND a.patient_id = $2 ORDER BY a.starts_at_ms, a.id",
        None => "ORDER BY a.id",
    };
    let sql = format!(
        "SELECT a.id, a.version, a.record, a.patient_id, a.practitioner_id, a.starts_at_ms,
             a.duration_mins, a.reason, a.status, e.id
         FROM appointments a
         LEFT JOIN encounters e ON e.appointment_id = a.id AND e.clinic_id = a.clinic_id
         WHERE a.clinic_id = $1 {which}"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(clinic);
    if let Some(p) = patient_id {
        query = query.bind(p.to_string());
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| {
            Ok((
                parse_uuid(&r.get::<String, _>(0))?,
                stored_appointment(r, 1)?,
            ))
        })
        .collect()
}

/// Stores a new appointment at version 1.
pub async fn insert(
    tx: &mut ClinicTx,
    id: Uuid,
    body: &str,
    c: &Columns<'_>,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO appointments (id, clinic_id, patient_id, starts_at_ms, reason, record,
             version, practitioner_id, duration_mins, status)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(clinic)
    .bind(c.patient_id.to_string())
    .bind(c.starts_at_ms)
    .bind(c.reason)
    .bind(body)
    .bind(c.practitioner_id.to_string())
    .bind(c.duration_mins)
    .bind(c.status)
    .execute(&mut **tx)
    .await
    // Its own clinic's ids were looked up first: what clashes here is an id a workstation
    // chose that another clinic's appointment holds.
    .map_err(conflict_if_unique("id"))?;
    Ok(())
}

/// Replaces the appointment's content if it is still at `based_on`.
pub async fn update(
    tx: &mut ClinicTx,
    id: Uuid,
    based_on: u64,
    body: &str,
    c: &Columns<'_>,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let done = sqlx::query(
        "UPDATE appointments SET record = $1, version = version + 1, starts_at_ms = $2,
             reason = $3, practitioner_id = $4, duration_mins = $5, status = $6
         WHERE id = $7 AND clinic_id = $8 AND version = $9",
    )
    .bind(body)
    .bind(c.starts_at_ms)
    .bind(c.reason)
    .bind(c.practitioner_id.to_string())
    .bind(c.duration_mins)
    .bind(c.status)
    .bind(id.to_string())
    .bind(clinic)
    .bind(i64::try_from(based_on).map_err(|_| ServerError::Internal("version out of range"))?)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the practitioner has another appointment that holds its time (booked, arrived
/// or checked in) overlapping `[start_ms, end_ms)`.
pub async fn overlaps(
    tx: &mut ClinicTx,
    practitioner_id: Uuid,
    start_ms: i64,
    end_ms: i64,
    except: Option<Uuid>,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM appointments
         WHERE clinic_id = $1 AND practitioner_id = $2
           AND status IN ('booked', 'arrived', 'checked-in')
           AND starts_at_ms < $4 AND starts_at_ms + duration_mins * 60000 > $3
           AND id <> $5
         LIMIT 1",
    )
    .bind(clinic)
    .bind(practitioner_id.to_string())
    .bind(start_ms)
    .bind(end_ms)
    .bind(except.map(|e| e.to_string()).unwrap_or_default())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// Opens the encounter a check-in begins.
pub async fn insert_encounter(
    tx: &mut ClinicTx,
    id: Uuid,
    patient_id: Uuid,
    appointment_id: Uuid,
    started_at_ms: i64,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO encounters (id, clinic_id, patient_id, appointment_id, started_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(clinic)
    .bind(patient_id.to_string())
    .bind(appointment_id.to_string())
    .bind(started_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
