//! Workstations: enrollment codes, device rows and keys, escrowed device secrets, revocation.

use super::*;

/// What a workstation leaves in escrow at enrollment.
#[derive(Debug, Clone)]
pub struct Escrow {
    /// Its device secret sealed under the server's escrow key ([`crate::secrets::seal::SealKey`]).
    pub sealed_secret: String,
    /// Its recovery key's public half, lowercase hex.
    pub recovery_public_key: String,
}

/// An enrollment code redeemed in the caller's transaction: the clinic it was for and who
/// issued it (`None`: the operator's console). Built only by [`Store::enroll_device`].
#[derive(Debug)]
pub struct RedeemedCode {
    pub clinic_id: Uuid,
    pub issued_by: Option<Uuid>,
}

/// A device as the server knows it.
pub struct DeviceRecord {
    pub id: Uuid,
    pub clinic_id: Uuid,
    pub public_key: [u8; 32],
    pub revoked: bool,
}

impl Store {
    /// Stores a code's hash; `issued_by` is the admin who asked for it (none from the
    /// operator's console).
    pub async fn insert_enrollment_code(
        &self,
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the code used and registers the device in the caller's transaction; `None` if
    /// the code is unknown, used or expired. Answers the clinic and who issued the code
    /// (`None`: the operator's console).
    #[allow(clippy::too_many_arguments)]
    pub async fn enroll_device(
        tx: &mut AnyConnection,
        code_hash: &str,
        device_id: Uuid,
        name: &str,
        public_key_hex: &str,
        escrow: &Escrow,
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
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = claimed else {
            return Ok(None);
        };
        let clinic_id = parse_uuid(&row.get::<String, _>(0))?;
        let issued_by: Option<String> = row.get(1);
        let issuer = issued_by.as_deref().map(parse_uuid).transpose()?;
        let inserted = sqlx::query(
            "INSERT INTO devices (id, clinic_id, name, public_key, enrolled_at_ms, enrolled_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(device_id.to_string())
        .bind(clinic_id.to_string())
        .bind(name)
        .bind(public_key_hex)
        .bind(now_ms)
        .bind(issued_by)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ServerError::Conflict {
                    field: "public_key",
                });
            }
            Err(e) => return Err(e.into()),
        }
        let escrowed = sqlx::query(
            "INSERT INTO device_escrow (device_id, clinic_id, sealed_secret, recovery_public_key)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(device_id.to_string())
        .bind(clinic_id.to_string())
        .bind(&escrow.sealed_secret)
        .bind(&escrow.recovery_public_key)
        .execute(&mut *tx)
        .await;
        match escrowed {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(ServerError::Conflict {
                    field: "recovery_public_key",
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Some(RedeemedCode {
            clinic_id,
            issued_by: issuer,
        }))
    }

    /// The public recovery key of a workstation (before any session: login proofs).
    pub async fn recovery_key(&self, device_id: Uuid) -> Result<Option<[u8; 32]>, ServerError> {
        let hex: Option<String> = sqlx::query_scalar(
            "SELECT recovery_public_key FROM device_escrow WHERE device_id = $1",
        )
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
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
        Ok(sqlx::query_scalar(
            "SELECT sealed_secret FROM device_escrow WHERE device_id = $1 AND clinic_id = $2",
        )
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn device(&self, device_id: Uuid) -> Result<Option<DeviceRecord>, ServerError> {
        let row = sqlx::query(
            "SELECT clinic_id, public_key, revoked_at_ms IS NOT NULL FROM devices
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
            revoked: flag(&row, 2)?,
        }))
    }

    /// Revokes a device of the scope's clinic and every session opened from it. Returns
    /// false when the clinic has no such device (another clinic's device included).
    pub async fn revoke_device(
        &self,
        scope: &ClinicScope,
        device_id: Uuid,
        now_ms: i64,
    ) -> Result<bool, ServerError> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE devices SET revoked_at_ms = coalesce(revoked_at_ms, $1)
             WHERE id = $2 AND clinic_id = $3 AND kind = 'workstation'",
        )
        .bind(now_ms)
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "UPDATE sessions SET revoked_at_ms = $1 WHERE device_id = $2 AND clinic_id = $3
             AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(device_id.to_string())
        .bind(scope.clinic_id().to_string())
        .execute(&mut *tx)
        .await?;
        // Crypto-shredding on the server's side too: nobody can recover the device secret
        // of a revoked workstation, so its caches and outbox stay closed for good.
        sqlx::query("DELETE FROM device_escrow WHERE device_id = $1 AND clinic_id = $2")
            .bind(device_id.to_string())
            .bind(scope.clinic_id().to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(found)
    }
}
