//! Workstations: device rows and keys, escrowed device secrets, last seen, revocation.
//! (Their enrollment codes are [`super::enrollment`]'s.)

use super::sql::{Statement, Value};
use super::*;

/// What a workstation leaves in escrow at enrollment.
#[derive(Debug, Clone)]
pub struct Escrow {
    /// Its device secret sealed under the server's escrow key ([`crate::secrets::seal::SealKey`]).
    pub sealed_secret: String,
    /// Its recovery key's public half, lowercase hex.
    pub recovery_public_key: String,
}

/// A device as the server knows it.
pub struct DeviceRecord {
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub public_key: [u8; 32],
    /// When the device was revoked (`None`: it is live).
    pub revoked_at_ms: Option<i64>,
    /// When it was enrolled: nothing it signed can be older (within a clock's skew).
    pub enrolled_at_ms: i64,
}

impl DeviceRecord {
    pub fn revoked(&self) -> bool {
        self.revoked_at_ms.is_some()
    }
}

/// A workstation as its clinic's admins list it, with its audit trail's standing: the
/// sequence number up to which its events arrived without a gap, the highest it reported,
/// and how many of its stored events lie above the gap-free part.
pub struct WorkstationRow {
    pub id: Uuid,
    pub name: String,
    pub enrolled_at_ms: i64,
    /// The display name of the admin who issued its code (`None`: the operator's console).
    pub enrolled_by: Option<String>,
    pub last_seen_at_ms: Option<i64>,
    pub app_version: Option<String>,
    pub revoked_at_ms: Option<i64>,
    pub contiguous_seq: i64,
    pub max_seq: i64,
    pub stored_above_contiguous: i64,
}

/// Registers a workstation's key in the caller's transaction (enrollment); `Conflict` on
/// `public_key` if another device has it.
pub async fn insert_workstation(
    conn: &mut AnyConnection,
    clinic_id: Uuid,
    device_id: Uuid,
    name: &str,
    public_key_hex: &str,
    enrolled_by: Option<Uuid>,
    now_ms: i64,
) -> Result<(), ServerError> {
    let inserted = sqlx::query(
        "INSERT INTO devices (id, clinic_id, name, public_key, enrolled_at_ms, enrolled_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(device_id.to_string())
    .bind(clinic_id.to_string())
    .bind(name)
    .bind(public_key_hex)
    .bind(now_ms)
    .bind(enrolled_by.map(|u| u.to_string()))
    .execute(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ServerError::Conflict {
            field: "public_key",
        }),
        Err(e) => Err(e.into()),
    }
}

/// Stores a workstation's escrow in the caller's transaction (enrollment); `Conflict` on
/// `recovery_public_key` if another device has that recovery key.
pub async fn insert_escrow(
    conn: &mut AnyConnection,
    clinic_id: Uuid,
    device_id: Uuid,
    escrow: &Escrow,
) -> Result<(), ServerError> {
    let escrowed = sqlx::query(
        "INSERT INTO device_escrow (device_id, clinic_id, sealed_secret, recovery_public_key)
             VALUES ($1, $2, $3, $4)",
    )
    .bind(device_id.to_string())
    .bind(clinic_id.to_string())
    .bind(&escrow.sealed_secret)
    .bind(&escrow.recovery_public_key)
    .execute(conn)
    .await;
    match escrowed {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ServerError::Conflict {
            field: "recovery_public_key",
        }),
        Err(e) => Err(e.into()),
    }
}

/// The device talked to the server at `now_ms`, with its app version when it said: for a
/// transaction that writes anyway (an audit upload's), where a write of its own would
/// queue for the store's one writer a second time.
pub(crate) fn seen_statement(device_id: Uuid, now_ms: i64, app_version: Option<&str>) -> Statement {
    let mut st = Statement::new("UPDATE devices SET last_seen_at_ms = ");
    st.bind(now_ms)
        .push(", app_version = coalesce(")
        .bind(Value::OptText(app_version.map(str::to_owned)))
        .push(", app_version) WHERE id = ")
        .bind(device_id.to_string());
    st
}

impl Store {
    /// [`seen_statement`] on its own (a sign-in).
    pub async fn device_seen(
        &self,
        device_id: Uuid,
        now_ms: i64,
        app_version: Option<&str>,
    ) -> Result<(), ServerError> {
        seen_statement(device_id, now_ms, app_version)
            .query()
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The scope's clinic's workstations, active first, then by name.
    pub async fn workstations(
        &self,
        scope: &ClinicScope,
    ) -> Result<Vec<WorkstationRow>, ServerError> {
        // In the clinic's transaction: the upload progress it counts is behind the wall.
        let mut tx = self.clinic_tx(scope).await?;
        let rows = sqlx::query(
            "SELECT d.id, d.name, d.enrolled_at_ms, u.display_name, d.last_seen_at_ms,
                d.app_version, d.revoked_at_ms, coalesce(h.contiguous_seq, 0),
                coalesce(h.max_seq, 0),
                (SELECT COUNT(*) FROM audit_events e
                 WHERE e.device_id = d.id AND e.device_seq > coalesce(h.contiguous_seq, 0))
         FROM devices d
         LEFT JOIN users u ON u.id = d.enrolled_by AND u.clinic_id = d.clinic_id
         LEFT JOIN audit_device_heads h ON h.device_id = d.id
         WHERE d.clinic_id = $1 AND d.kind = 'workstation'
         ORDER BY d.revoked_at_ms IS NOT NULL, d.name, d.enrolled_at_ms",
        )
        .bind(scope.clinic_id().to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(WorkstationRow {
                    id: parse_uuid(r.get(0))?,
                    name: r.get(1),
                    enrolled_at_ms: r.get(2),
                    enrolled_by: r.get(3),
                    last_seen_at_ms: r.get(4),
                    app_version: r.get(5),
                    revoked_at_ms: r.get(6),
                    contiguous_seq: r.get(7),
                    max_seq: r.get(8),
                    stored_above_contiguous: r.get(9),
                })
            })
            .collect()
    }

    /// The public recovery key of a workstation of the scope's clinic (before any session:
    /// login proofs).
    pub async fn recovery_key(
        &self,
        scope: &ClinicScope,
        device_id: Uuid,
    ) -> Result<Option<[u8; 32]>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let hex: Option<String> = sqlx::query_scalar(
            "SELECT recovery_public_key FROM device_escrow WHERE device_id = $1 AND clinic_id = $2",
        )
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        hex.map(|h| {
            clinicdesk_protocol::audit::from_hex(&h)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(ServerError::Internal("stored recovery key malformed"))
        })
        .transpose()
    }

    /// A workstation's sealed device secret, if the clinic holds one for it.
    pub async fn sealed_device_secret(
        &self,
        scope: &ClinicScope,
        device_id: Uuid,
    ) -> Result<Option<String>, ServerError> {
        let mut tx = self.clinic_tx(scope).await?;
        let sealed = sqlx::query_scalar(
            "SELECT sealed_secret FROM device_escrow WHERE device_id = $1 AND clinic_id = $2",
        )
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(sealed)
    }

    pub async fn device(&self, device_id: Uuid) -> Result<Option<DeviceRecord>, ServerError> {
        let row = sqlx::query(
            "SELECT clinic_id, public_key, revoked_at_ms, enrolled_at_ms FROM devices
             WHERE id = $1 AND kind = 'workstation'",
        )
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let key_hex: String = row.get(1);
        let public_key = clinicdesk_protocol::audit::from_hex(&key_hex)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(ServerError::Internal("stored device key malformed"))?;
        Ok(Some(DeviceRecord {
            id: device_id,
            clinic_id: parse_uuid(&row.get::<String, _>(0))?,
            public_key,
            revoked_at_ms: row.get(2),
            enrolled_at_ms: row.get(3),
        }))
    }

    /// Revokes a device and ends its sessions, in the caller's clinic transaction, so the
    /// revocation commits with its audit event or not at all.
    pub async fn revoke_device_in(
        tx: &mut ClinicTx,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<bool, ServerError> {
        let clinic = tx.clinic_id().to_string();
        let found = sqlx::query(
            "UPDATE devices SET revoked_at_ms = coalesce(revoked_at_ms, $1)
             WHERE id = $2 AND clinic_id = $3 AND kind = 'workstation'",
        )
        .bind(now_ms)
        .bind(device_id.to_string())
        .bind(&clinic)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "UPDATE sessions SET revoked_at_ms = $1 WHERE device_id = $2 AND clinic_id = $3
             AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(device_id.to_string())
        .bind(&clinic)
        .execute(&mut **tx)
        .await?;
        // Crypto-shredding on the server's side too: nobody can recover the device secret
        // of a revoked workstation, so its caches and outbox stay closed for good.
        sqlx::query("DELETE FROM device_escrow WHERE device_id = $1 AND clinic_id = $2")
            .bind(device_id.to_string())
            .bind(&clinic)
            .execute(&mut **tx)
            .await?;
        Ok(found)
    }
}
