//! The statements of sensitive-field encryption: each clinic's wrapped keys
//! (`clinic_keys`), the sealed values (`sealed_values`), the blind-index columns of
//! `patients`, and the operator's key rotations (`key_rotations`). What is sealed, under
//! which key, is `crate::clinical::sensitive`'s and `crate::admin::keys`'s business; every
//! key and value here is already wrapped or sealed (hex).

use super::*;

/// What a clinic key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Seals values.
    Data,
    /// Makes blind indexes.
    Index,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Data => "data",
            Purpose::Index => "index",
        }
    }
}

/// One of a clinic's keys, wrapped.
#[derive(Debug, Clone)]
pub struct WrappedKey {
    pub key_id: u32,
    pub kek_version: u32,
    /// Hex.
    pub wrapped: String,
    pub rotation_id: Option<i64>,
}

fn u32_of(v: i64) -> Result<u32, ServerError> {
    u32::try_from(v).map_err(|_| ServerError::Internal("stored key number out of range"))
}

fn wrapped_key(row: &AnyRow) -> Result<WrappedKey, ServerError> {
    Ok(WrappedKey {
        key_id: u32_of(row.get(0))?,
        kek_version: u32_of(row.get(1))?,
        wrapped: row.get(2),
        rotation_id: row.get(3),
    })
}

/// The clinic's keys for `purpose`, oldest first.
pub async fn keys(tx: &mut ClinicTx, purpose: Purpose) -> Result<Vec<WrappedKey>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT key_id, kek_version, wrapped, rotation_id FROM clinic_keys
         WHERE clinic_id = $1 AND purpose = $2 ORDER BY key_id",
    )
    .bind(clinic)
    .bind(purpose.as_str())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(wrapped_key).collect()
}

/// One of the clinic's keys.
pub async fn key(
    tx: &mut ClinicTx,
    purpose: Purpose,
    key_id: u32,
) -> Result<Option<WrappedKey>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT key_id, kek_version, wrapped, rotation_id FROM clinic_keys
         WHERE clinic_id = $1 AND purpose = $2 AND key_id = $3",
    )
    .bind(clinic)
    .bind(purpose.as_str())
    .bind(i64::from(key_id))
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(wrapped_key).transpose()
}

/// Stores a new key of the clinic.
pub async fn insert_key(
    tx: &mut ClinicTx,
    purpose: Purpose,
    key: &WrappedKey,
    now_ms: i64,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO clinic_keys (clinic_id, purpose, key_id, kek_version, wrapped,
             created_at_ms, rotation_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(clinic)
    .bind(purpose.as_str())
    .bind(i64::from(key.key_id))
    .bind(i64::from(key.kek_version))
    .bind(&key.wrapped)
    .bind(now_ms)
    .bind(key.rotation_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces a key's wrapping (the same key under another key-encryption key version).
pub async fn rewrap(
    tx: &mut ClinicTx,
    purpose: Purpose,
    key_id: u32,
    kek_version: u32,
    wrapped: &str,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "UPDATE clinic_keys SET kek_version = $1, wrapped = $2
         WHERE clinic_id = $3 AND purpose = $4 AND key_id = $5",
    )
    .bind(i64::from(kek_version))
    .bind(wrapped)
    .bind(clinic)
    .bind(purpose.as_str())
    .bind(i64::from(key_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes one of the clinic's keys that nothing depends on any more (checked here, in the
/// same statement: no value sealed under a data key, no patient's SSN indexes made by an
/// index key): `false` if something still does.
pub async fn delete_unused_key(
    tx: &mut ClinicTx,
    purpose: Purpose,
    key_id: u32,
) -> Result<bool, ServerError> {
    let sql = match purpose {
        Purpose::Data => {
            "DELETE FROM clinic_keys
             WHERE clinic_id = $1 AND purpose = 'data' AND key_id = $2
               AND NOT EXISTS (SELECT 1 FROM sealed_values s
                               WHERE s.clinic_id = $1 AND s.key_id = $2)"
        }
        Purpose::Index => {
            "DELETE FROM clinic_keys
             WHERE clinic_id = $1 AND purpose = 'index' AND key_id = $2
               AND NOT EXISTS (SELECT 1 FROM patients p
                               WHERE p.clinic_id = $1 AND p.ssn_index <> ''
                                 AND p.ssn_index_key = $2)"
        }
    };
    let done = sqlx::query(sql)
        .bind(tx.clinic_id().to_string())
        .bind(i64::from(key_id))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// One sealed value as stored.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub id: Uuid,
    pub field: String,
    pub key_id: u32,
    /// Hex.
    pub sealed: String,
}

fn sealed_row(row: &AnyRow) -> Result<SealedRow, ServerError> {
    Ok(SealedRow {
        id: parse_uuid(&row.get::<String, _>(0))?,
        field: row.get(1),
        key_id: u32_of(row.get(2))?,
        sealed: row.get(3),
    })
}

pub async fn insert_sealed(tx: &mut ClinicTx, row: &SealedRow) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO sealed_values (clinic_id, id, field, key_id, sealed)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(clinic)
    .bind(row.id.to_string())
    .bind(&row.field)
    .bind(i64::from(row.key_id))
    .bind(&row.sealed)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The multi-row INSERTs of many sealed values (an import batch's).
pub(crate) fn insert_sealed_rows(tx: &ClinicTx, rows: &[SealedRow]) -> Vec<sql::Statement> {
    let clinic = tx.clinic_id().to_string();
    let values = rows
        .iter()
        .map(|row| {
            vec![
                sql::Value::from(clinic.as_str()),
                row.id.to_string().into(),
                row.field.as_str().into(),
                i64::from(row.key_id).into(),
                row.sealed.as_str().into(),
            ]
        })
        .collect();
    sql::insert_rows(
        "INSERT INTO sealed_values (clinic_id, id, field, key_id, sealed) VALUES ",
        "",
        values,
    )
}

pub async fn sealed(tx: &mut ClinicTx, id: Uuid) -> Result<Option<SealedRow>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT id, field, key_id, sealed FROM sealed_values WHERE clinic_id = $1 AND id = $2",
    )
    .bind(clinic)
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(sealed_row).transpose()
}

/// Up to `limit` of the clinic's values after `after` (by id; `None` from the first) sealed
/// under a data key other than `key_id`.
pub async fn sealed_not_under(
    tx: &mut ClinicTx,
    key_id: u32,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<SealedRow>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT id, field, key_id, sealed FROM sealed_values
         WHERE clinic_id = $1 AND id > $2 AND key_id <> $3 ORDER BY id LIMIT $4",
    )
    .bind(clinic)
    .bind(after.map(|id| id.to_string()).unwrap_or_default())
    .bind(i64::from(key_id))
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(sealed_row).collect()
}

/// How many of the clinic's values are sealed under a key other than `key_id`.
pub async fn count_not_under(tx: &mut ClinicTx, key_id: u32) -> Result<u64, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sealed_values WHERE clinic_id = $1 AND key_id <> $2",
    )
    .bind(clinic)
    .bind(i64::from(key_id))
    .fetch_one(&mut **tx)
    .await?;
    u64::try_from(n).map_err(|_| ServerError::Internal("count negative"))
}

/// Replaces a value's sealing, if it is still under `from_key` (a concurrent re-encryption
/// may have moved it first): `false` when it was not.
pub async fn reseal(
    tx: &mut ClinicTx,
    id: Uuid,
    from_key: u32,
    to_key: u32,
    sealed: &str,
) -> Result<bool, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let done = sqlx::query(
        "UPDATE sealed_values SET key_id = $1, sealed = $2
         WHERE clinic_id = $3 AND id = $4 AND key_id = $5",
    )
    .bind(i64::from(to_key))
    .bind(sealed)
    .bind(clinic)
    .bind(id.to_string())
    .bind(i64::from(from_key))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Which blind-index column a search looks in.
#[derive(Debug, Clone, Copy)]
pub enum IndexColumn {
    Ssn,
    SsnLast4,
}

/// Sets a patient's SSN blind indexes ('' for none) and the index key that made them.
pub async fn set_ssn_index(
    tx: &mut ClinicTx,
    patient_id: Uuid,
    whole: &str,
    last4: &str,
    key_id: u32,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "UPDATE patients SET ssn_index = $1, ssn_last4_index = $2, ssn_index_key = $3
         WHERE clinic_id = $4 AND id = $5",
    )
    .bind(whole)
    .bind(last4)
    .bind(i64::from(key_id))
    .bind(clinic)
    .bind(patient_id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The patients of the clinic whose `column` holds one of `indexes` (one per index key), by
/// name (at most `limit`).
pub async fn by_index(
    tx: &mut ClinicTx,
    column: IndexColumn,
    indexes: &[String],
    limit: u32,
    offset: u32,
) -> Result<Vec<(Uuid, super::records::StoredRecord)>, ServerError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let column = match column {
        IndexColumn::Ssn => "ssn_index",
        IndexColumn::SsnLast4 => "ssn_last4_index",
    };
    // $1 the clinic, $2 and $3 the page, then one placeholder per index key.
    let any_of = (0..indexes.len())
        .map(|i| format!("${}", i + 4))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT id, version, record FROM patients WHERE clinic_id = $1 AND {column} IN ({any_of})
         ORDER BY family_key, given_key, id LIMIT $2 OFFSET $3"
    );
    // Safe: the column is one of two names above, the rest placeholders.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tx.clinic_id().to_string())
        .bind(i64::from(limit))
        .bind(i64::from(offset));
    for index in indexes {
        query = query.bind(index);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    rows.iter().map(super::records::id_and_record).collect()
}

/// Up to `limit` of the clinic's patients after `after` (by id; `None` from the first) whose
/// SSN indexes were made by an index key other than `key_id`: (id, index key, stored
/// content).
pub async fn indexed_not_under(
    tx: &mut ClinicTx,
    key_id: u32,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<(Uuid, u32, String)>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT id, ssn_index_key, record FROM patients
         WHERE clinic_id = $1 AND id > $2 AND ssn_index <> '' AND ssn_index_key <> $3
         ORDER BY id LIMIT $4",
    )
    .bind(clinic)
    .bind(after.map(|id| id.to_string()).unwrap_or_default())
    .bind(i64::from(key_id))
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                parse_uuid(&r.get::<String, _>(0))?,
                u32_of(r.get(1))?,
                r.try_get(2)
                    .map_err(|_| ServerError::Internal("indexed patient without a record"))?,
            ))
        })
        .collect()
}

/// How many of the clinic's patients have SSN indexes made by a key other than `key_id`.
pub async fn count_indexed_not_under(tx: &mut ClinicTx, key_id: u32) -> Result<u64, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM patients
         WHERE clinic_id = $1 AND ssn_index <> '' AND ssn_index_key <> $2",
    )
    .bind(clinic)
    .bind(i64::from(key_id))
    .fetch_one(&mut **tx)
    .await?;
    u64::try_from(n).map_err(|_| ServerError::Internal("count negative"))
}

/// A run of `keys rotate`.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub id: i64,
    pub kek_version: u32,
    pub reencrypt: bool,
}

/// The run of `keys rotate` that did not finish, if one did not.
pub async fn unfinished_rotation(store: &Store) -> Result<Option<Rotation>, ServerError> {
    let mut tx = store.tx().await?;
    let row = sqlx::query(
        "SELECT id, kek_version, reencrypt FROM key_rotations
         WHERE finished_at_ms IS NULL ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|r| {
        Ok(Rotation {
            id: r.get(0),
            kek_version: u32_of(r.get(1))?,
            reencrypt: r.get::<i64, _>(2) != 0,
        })
    })
    .transpose()
}

/// Records the start of a rotation to `kek_version`.
pub async fn start_rotation(
    store: &Store,
    kek_version: u32,
    reencrypt: bool,
    now_ms: i64,
) -> Result<Rotation, ServerError> {
    let mut tx = store.tx().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO key_rotations (kek_version, reencrypt, started_at_ms)
         VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(i64::from(kek_version))
    .bind(i64::from(reencrypt))
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Rotation {
        id,
        kek_version,
        reencrypt,
    })
}

/// A resumed rotation asked to re-encrypt too.
pub async fn also_reencrypt(store: &Store, rotation_id: i64) -> Result<(), ServerError> {
    let mut tx = store.tx().await?;
    sqlx::query("UPDATE key_rotations SET reencrypt = 1 WHERE id = $1")
        .bind(rotation_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn finish_rotation(
    store: &Store,
    rotation_id: i64,
    now_ms: i64,
) -> Result<(), ServerError> {
    let mut tx = store.tx().await?;
    sqlx::query("UPDATE key_rotations SET finished_at_ms = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(rotation_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Every clinic's id, for the operator's jobs that visit each clinic in turn.
pub async fn clinic_ids(store: &Store) -> Result<Vec<Uuid>, ServerError> {
    let mut tx = store.tx().await?;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM clinics ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    ids.iter().map(|s| parse_uuid(s)).collect()
}
