//! The practitioner directory an import fills (`practitioner_directory`: stored content,
//! version, the linked account); its history is in `record_versions`. What an entry may
//! hold is `crate::admin::directory`'s business.

use super::records::StoredRecord;
use super::*;

/// A directory entry as stored.
pub struct StoredEntry {
    pub id: Uuid,
    pub source_key: String,
    pub record: StoredRecord,
}

fn stored(row: &AnyRow) -> Result<StoredEntry, ServerError> {
    Ok(StoredEntry {
        id: parse_uuid(&row.get::<String, _>(0))?,
        source_key: row.get(1),
        record: StoredRecord {
            version: u64::try_from(row.get::<i64, _>(2))
                .map_err(|_| ServerError::Internal("stored version negative"))?,
            body: row.get(3),
        },
    })
}

/// The clinic's entry; another clinic's is `None`, like a missing one.
pub async fn entry(tx: &mut ClinicTx, id: Uuid) -> Result<Option<StoredEntry>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT id, source_key, version, record FROM practitioner_directory
         WHERE id = $1 AND clinic_id = $2",
    )
    .bind(id.to_string())
    .bind(clinic)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(stored).transpose()
}

/// The clinic's entry imported from `source_key`.
pub async fn by_source(
    tx: &mut ClinicTx,
    source_key: &str,
) -> Result<Option<StoredEntry>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT id, source_key, version, record FROM practitioner_directory
         WHERE clinic_id = $1 AND source_key = $2",
    )
    .bind(clinic)
    .bind(source_key)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(stored).transpose()
}

/// Whether the clinic has an entry imported from `source_key` (`None` if not), and the
/// account it is linked to, if any.
pub async fn link_of(
    tx: &mut ClinicTx,
    source_key: &str,
) -> Result<Option<Option<Uuid>>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let user: Option<Option<String>> = sqlx::query_scalar(
        "SELECT user_id FROM practitioner_directory WHERE clinic_id = $1 AND source_key = $2",
    )
    .bind(clinic)
    .bind(source_key)
    .fetch_optional(&mut **tx)
    .await?;
    user.map(|u| u.map(|u| parse_uuid(&u)).transpose())
        .transpose()
}

/// The entry linked to `user_id`, if any.
pub async fn of_user(tx: &mut ClinicTx, user_id: Uuid) -> Result<Option<Uuid>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let id: Option<String> = sqlx::query_scalar(
        "SELECT id FROM practitioner_directory WHERE clinic_id = $1 AND user_id = $2",
    )
    .bind(clinic)
    .bind(user_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    id.map(|i| parse_uuid(&i)).transpose()
}

/// Every entry of the clinic, in the order of their names in the content (by id here;
/// the caller sorts what it shows).
pub async fn all(tx: &mut ClinicTx) -> Result<Vec<StoredEntry>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT id, source_key, version, record FROM practitioner_directory
         WHERE clinic_id = $1 ORDER BY id",
    )
    .bind(clinic)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(stored).collect()
}

pub async fn insert(
    tx: &mut ClinicTx,
    id: Uuid,
    source_key: &str,
    body: &str,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO practitioner_directory (id, clinic_id, source_key, record, version)
         VALUES ($1, $2, $3, $4, 1)",
    )
    .bind(id.to_string())
    .bind(clinic)
    .bind(source_key)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces the entry's content and its linked account if it is still at `based_on`.
pub async fn update(
    tx: &mut ClinicTx,
    id: Uuid,
    based_on: u64,
    body: &str,
    user_id: Option<Uuid>,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let done = sqlx::query(
        "UPDATE practitioner_directory SET record = $1, user_id = $2, version = version + 1
         WHERE id = $3 AND clinic_id = $4 AND version = $5",
    )
    .bind(body)
    .bind(user_id.map(|u| u.to_string()))
    .bind(id.to_string())
    .bind(clinic)
    .bind(i64::try_from(based_on).map_err(|_| ServerError::Internal("version out of range"))?)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
