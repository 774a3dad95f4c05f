//! Clinics: their rows and lock policy (idle timeout, maximum time offline).

use super::*;

/// A clinic [`insert_clinic`] added in the caller's transaction: what
/// `ClinicScope::of_new_clinic` is built from (provisioning).
#[derive(Debug)]
pub struct NewClinic {
    pub id: Uuid,
}

/// Adds a clinic in the caller's transaction (provisioning, seeding): the one place a clinic
/// row is written.
pub async fn insert_clinic(
    conn: &mut AnyConnection,
    id: Uuid,
    name: &str,
    idle_timeout_secs: u64,
    time_zone: &str,
    now_ms: i64,
) -> Result<NewClinic, ServerError> {
    sqlx::query(
        "INSERT INTO clinics (id, name, idle_timeout_secs, created_at_ms, time_zone)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(i64::try_from(idle_timeout_secs).unwrap_or(i64::MAX))
    .bind(now_ms)
    .bind(time_zone)
    .execute(conn)
    .await?;
    Ok(NewClinic { id })
}

impl Store {
    /// [`insert_clinic`] on its own.
    pub async fn create_clinic(
        &self,
        id: Uuid,
        name: &str,
        idle_timeout_secs: u64,
        time_zone: &str,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        let mut conn = self.pool.acquire().await?;
        insert_clinic(&mut conn, id, name, idle_timeout_secs, time_zone, now_ms).await?;
        Ok(())
    }

    /// The clinic's IANA time zone name, as stored.
    pub async fn clinic_time_zone(&self, scope: &ClinicScope) -> Result<String, ServerError> {
        let tz: Option<String> = sqlx::query_scalar("SELECT time_zone FROM clinics WHERE id = $1")
            .bind(scope.clinic_id().to_string())
            .fetch_optional(&self.pool)
            .await?;
        tz.ok_or(ServerError::NotFound)
    }

    /// How many different admins review each break-glass grant opened from now on.
    pub async fn break_glass_reviewers(&self, scope: &ClinicScope) -> Result<u8, ServerError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT break_glass_reviewers FROM clinics WHERE id = $1")
                .bind(scope.clinic_id().to_string())
                .fetch_optional(&self.pool)
                .await?;
        let n = n.ok_or(ServerError::NotFound)?;
        u8::try_from(n).map_err(|_| ServerError::Internal("stored reviewer count malformed"))
    }

    pub async fn clinic_name(&self, clinic_id: Uuid) -> Result<Option<String>, ServerError> {
        let row = sqlx::query("SELECT name FROM clinics WHERE id = $1")
            .bind(clinic_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// The clinic's lock policy: (idle timeout, maximum time offline), in seconds.
    pub async fn lock_policy(&self, clinic_id: Uuid) -> Result<(u64, u64), ServerError> {
        let row =
            sqlx::query("SELECT idle_timeout_secs, max_offline_secs FROM clinics WHERE id = $1")
                .bind(clinic_id.to_string())
                .fetch_one(&self.pool)
                .await?;
        let secs = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
        Ok((secs(0), secs(1)))
    }
}

/// Takes the clinic's write lock before anything is read, so that concurrent writers of a
/// clinic's log queue (SQLite's busy timeout, PostgreSQL's row lock) instead of failing on
/// a stale read snapshot. Every transaction that appends leaves or signs a checkpoint
/// starts with it. On PostgreSQL the same statement names the clinic for row-level
/// security in this transaction, as [`Store::clinic_tx`] does: the audit rows it then
/// reads and writes are behind the wall.
pub async fn lock_clinic(conn: &mut AnyConnection, clinic: Uuid) -> Result<(), ServerError> {
    let sql = if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        "UPDATE clinics SET name = name WHERE id = $1
         RETURNING set_config('clinicdesk.clinic_id', $1, true)"
    } else {
        "UPDATE clinics SET name = name WHERE id = $1"
    };
    sqlx::query(sql)
        .bind(clinic.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// The clinic of a single-clinic server (the embedded default); `None` when there are
    /// several or none.
    pub async fn only_clinic(&self) -> Result<Option<Uuid>, ServerError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM clinics LIMIT 2")
            .fetch_all(&self.pool)
            .await?;
        match ids.as_slice() {
            [one] => {
                Ok(Some(Uuid::parse_str(one).map_err(|_| {
                    ServerError::Internal("stored id malformed")
                })?))
            }
            _ => Ok(None),
        }
    }
}

/// Sets the clinic's time zone in the caller's transaction (with its audit event).
pub async fn set_time_zone(tx: &mut ClinicTx, time_zone: &str) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query("UPDATE clinics SET time_zone = $1 WHERE id = $2")
        .bind(time_zone)
        .bind(clinic)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets how many admins review each break-glass grant opened from now on, in the caller's
/// transaction (with its audit event). The table allows 1 or 2.
pub async fn set_break_glass_reviewers(
    tx: &mut ClinicTx,
    reviewers: u8,
) -> Result<(), ServerError> {
    let clinic = tx.clinic_id().to_string();
    sqlx::query("UPDATE clinics SET break_glass_reviewers = $1 WHERE id = $2")
        .bind(i64::from(reviewers))
        .bind(clinic)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
