//! Import jobs (`import_jobs`): one row per upload an admin started, its progress and its
//! report as JSON text (what goes in the report is `crate::admin::import`'s business).

use super::*;

/// A job as stored.
pub struct JobRow {
    pub status: String,
    pub total: i64,
    pub done: i64,
    pub report: String,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

pub async fn insert(
    tx: &mut ClinicTx,
    id: Uuid,
    started_by: Uuid,
    total: i64,
    report: &str,
    now_ms: i64,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "INSERT INTO import_jobs (id, clinic_id, started_by, status, total, done, report,
             started_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 'running', $4, 0, $5, $6, $6)",
    )
    .bind(id.to_string())
    .bind(clinic)
    .bind(started_by.to_string())
    .bind(total)
    .bind(report)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records how far the job is at `now_ms`; `finished` with its last status.
pub async fn progress(
    tx: &mut ClinicTx,
    id: Uuid,
    status: &str,
    done: i64,
    report: &str,
    now_ms: i64,
    finished: bool,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query(
        "UPDATE import_jobs SET status = $1, done = $2, report = $3, updated_at_ms = $4,
             finished_at_ms = $5
         WHERE clinic_id = $6 AND id = $7",
    )
    .bind(status)
    .bind(done)
    .bind(report)
    .bind(now_ms)
    .bind(finished.then_some(now_ms))
    .bind(clinic)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(tx: &mut ClinicTx, id: Uuid) -> Result<Option<JobRow>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let row = sqlx::query(
        "SELECT status, total, done, report, started_at_ms, finished_at_ms, updated_at_ms
         FROM import_jobs
         WHERE clinic_id = $1 AND id = $2",
    )
    .bind(clinic)
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| JobRow {
        status: r.get(0),
        total: r.get(1),
        done: r.get(2),
        report: r.get(3),
        started_at_ms: r.get(4),
        finished_at_ms: r.get(5),
        updated_at_ms: r.get(6),
    }))
}
