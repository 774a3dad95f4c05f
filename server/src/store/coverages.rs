//! A patient's insurance coverages as records (`coverages`: stored content and version);
//! their history is in `record_versions`. What a coverage may hold is
//! `crate::clinical::coverage`'s business.

use super::records::StoredRecord;
use super::*;

/// A coverage as stored, and whose it is.
pub struct StoredCoverage {
    pub patient_id: Uuid,
    pub record: StoredRecord,
}

fn stored(row: &AnyRow) -> Result<(Uuid, StoredCoverage), ServerError> {
    Ok((
        parse_uuid(&row.get::<String, _>(0))?,
        StoredCoverage {
            patient_id: parse_uuid(&row.get::<String, _>(1))?,
            record: StoredRecord {
                version: u64::try_from(row.get::<i64, _>(2))
                    .map_err(|_| ServerError::Internal("stored version negative"))?,
                body: row.get(3),
            },
        },
    ))
}

/// The clinic's coverage; another clinic's is `None`, like a missing one.
pub async fn coverage(tx: &mut ClinicTx, id: Uuid) -> Result<Option<StoredCoverage>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT id, patient_id, version, record FROM coverages WHERE id = $1 AND clinic_id = $2",
    )
    .bind(id.to_string())
    .bind(clinic)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| stored(&r).map(|(_, c)| c)).transpose()
}

/// The patient's coverages, oldest first.
pub async fn of_patient(
    tx: &mut ClinicTx,
    patient_id: Uuid,
) -> Result<Vec<(Uuid, StoredCoverage)>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT id, patient_id, version, record FROM coverages
         WHERE clinic_id = $1 AND patient_id = $2 ORDER BY id",
    )
    .bind(clinic)
    .bind(patient_id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(stored).collect()
}

pub async fn insert(
    tx: &mut ClinicTx,
    id: Uuid,
    patient_id: Uuid,
    body: &str,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO coverages (id, clinic_id, patient_id, record, version)
         VALUES ($1, $2, $3, $4, 1)",
    )
    .bind(id.to_string())
    .bind(clinic)
    .bind(patient_id.to_string())
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces the coverage's content if it is still at `based_on`.
pub async fn update(
    tx: &mut ClinicTx,
    id: Uuid,
    based_on: u64,
    body: &str,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let done = sqlx::query(
        "UPDATE coverages SET record = $1, version = version + 1
         WHERE id = $2 AND clinic_id = $3 AND version = $4",
    )
    .bind(body)
    .bind(id.to_string())
    .bind(clinic)
    .bind(i64::try_from(based_on).map_err(|_| ServerError::Internal("version out of range"))?)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// A seeded coverage (version 0, before it has a history).
    pub async fn insert_seeded_coverage(
        &self,
        scope: &ClinicScope,
        patient_id: Uuid,
        body: &str,
    ) -> Result<(), ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let clinic = tx.clinic_id().to_string();
        sqlx::query(
            "INSERT INTO coverages (id, clinic_id, patient_id, record, version)
             VALUES ($1, $2, $3, $4, 0)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(clinic)
        .bind(patient_id.to_string())
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
