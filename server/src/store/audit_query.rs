//! Reads of a clinic's audit trail for the people who answer audit questions: search
//! (newest first, a page at a time), tamper alerts and the device sequences still
//! outstanding, the names a patient access report shows, the access review's users and
//! workstations, the chain keys an export names, and the users a synthetic trail acts as.
//!
//! The audit tables have no row-level security: every statement names the clinic, from
//! the [`ClinicScope`] or the [`ClinicTx`] it is given. Reads of one statement run on the
//! pool; a read of several takes the caller's [`ClinicTx`], so they see one snapshot.

use std::collections::HashMap;

use clinicdesk_protocol::audit::{AuditAction, AuditEvent, Hash32};
use clinicdesk_protocol::export::ExportFilters;
use clinicdesk_protocol::wire::{
    AuditRecord, FlaggedClaim, MAX_FLAGGED_CLAIMS, ReceivedAfterRevocation, TamperAlert,
};

use super::sql::Statement;
use super::*;

/// A stored id as a [`Uuid`]; the audit reads have always named a bad one this way.
fn stored_id(s: &str) -> Result<Uuid, ServerError> {
    Uuid::parse_str(s).map_err(|_| ServerError::Internal("stored id malformed"))
}

/// One key that signs a chain of the clinic, as stored.
#[derive(Debug, Clone)]
pub struct ChainKeyRow {
    /// The chain's device: a workstation, or the clinic's server chain.
    pub device_id: Uuid,
    /// The clinic's server chain, signed with the server's audit key (its row's key is not
    /// the one to trust).
    pub server_chain: bool,
    /// The workstation's enrolled key, hex.
    pub public_key: String,
}

/// A device whose chain has events stored past a missing sequence.
#[derive(Debug, Clone)]
pub struct DeviceBehind {
    pub device_id: Uuid,
    /// The highest sequence up to which its chain is whole.
    pub contiguous_seq: i64,
}

/// A user of the clinic as the access review lists them.
#[derive(Debug, Clone)]
pub struct ReviewedUser {
    /// As stored (the review prints it, and matches workstations to it).
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub active: bool,
    pub totp: bool,
    pub webauthn: bool,
    /// When their newest session began, UTC milliseconds.
    pub last_sign_in_ms: Option<i64>,
}

impl Store {
    /// The scope's logged events matching `filters`, newest first (by time, then id), at
    /// most `limit` of them, and only those before `before` (a (time, id) the previous page
    /// ended with).
    pub async fn audit_events(
        &self,
        scope: &ClinicScope,
        filters: &ExportFilters,
        before: Option<(i64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, ServerError> {
        let mut qb = Statement::new(
            "SELECT e.event_json, e.signature, e.received_at_ms, e.leaf_index
         FROM audit_events e WHERE e.leaf_index IS NOT NULL AND e.clinic_id = ",
        );
        qb.bind(scope.clinic_id().to_string());
        if let Some(p) = filters.patient_id {
            qb.push(" AND e.patient_id = ").bind(p.to_string());
        }
        if let Some(u) = filters.user_id {
            qb.push(" AND e.actor_user_id = ").bind(u.to_string());
        }
        if let Some(d) = filters.device_id {
            qb.push(" AND e.device_id = ").bind(d.to_string());
        }
        if let Some(a) = filters.action {
            qb.push(" AND e.action = ").bind(a.as_str());
        }
        if let Some(from) = filters.from_ms {
            qb.push(" AND e.occurred_at_ms >= ").bind(from);
        }
        if let Some(to) = filters.to_ms {
            qb.push(" AND e.occurred_at_ms < ").bind(to);
        }
        if let Some((ms, id)) = before {
            qb.push(" AND (e.occurred_at_ms < ")
                .bind(ms)
                .push(" OR (e.occurred_at_ms = ")
                .bind(ms)
                .push(" AND e.id < ")
                .bind(id.to_string())
                .push("))");
        }
        qb.push(" ORDER BY e.occurred_at_ms DESC, e.id DESC LIMIT ")
            .bind(limit);
        let mut tx = self.clinic_tx(scope).await?;
        let rows = qb.query().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let event: AuditEvent = serde_json::from_str(r.get::<&str, _>(0))
                    .map_err(|_| ServerError::Internal("stored event malformed"))?;
                Ok(AuditRecord {
                    event,
                    signature: r.get(1),
                    received_at_ms: r.get(2),
                    leaf_index: u64::try_from(r.get::<i64, _>(3)).unwrap_or(0),
                })
            })
            .collect()
    }

    /// The key of every chain of the scope's clinic, by device id.
    pub async fn chain_keys(&self, scope: &ClinicScope) -> Result<Vec<ChainKeyRow>, ServerError> {
        let rows = sqlx::query(
            "SELECT id, public_key, kind FROM devices WHERE clinic_id = $1 ORDER BY id",
        )
        .bind(scope.clinic_id().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChainKeyRow {
                    device_id: stored_id(row.get::<&str, _>(0))?,
                    server_chain: row.get::<&str, _>(2) == "server",
                    public_key: row.get(1),
                })
            })
            .collect()
    }

    /// The display name of each user of the scope's clinic (a row whose id is malformed
    /// names nobody).
    pub async fn user_names(
        &self,
        scope: &ClinicScope,
    ) -> Result<HashMap<Uuid, String>, ServerError> {
        self.names(
            scope,
            "SELECT id, display_name FROM users WHERE clinic_id = $1",
        )
        .await
    }

    /// The name of each device of the scope's clinic (as [`Store::user_names`]).
    pub async fn device_names(
        &self,
        scope: &ClinicScope,
    ) -> Result<HashMap<Uuid, String>, ServerError> {
        self.names(scope, "SELECT id, name FROM devices WHERE clinic_id = $1")
            .await
    }

    async fn names(
        &self,
        scope: &ClinicScope,
        sql: &'static str,
    ) -> Result<HashMap<Uuid, String>, ServerError> {
        let rows = sqlx::query(sql)
            .bind(scope.clinic_id().to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((Uuid::parse_str(r.get::<&str, _>(0)).ok()?, r.get(1))))
            .collect())
    }

    /// The scope's users and their roles, by id; rows that do not parse are left out.
    pub async fn users_and_roles(
        &self,
        scope: &ClinicScope,
    ) -> Result<Vec<(Uuid, Role)>, ServerError> {
        Ok(
            sqlx::query("SELECT id, role FROM users WHERE clinic_id = $1 ORDER BY id")
                .bind(scope.clinic_id().to_string())
                .fetch_all(&self.pool)
                .await?
                .iter()
                .filter_map(|r| {
                    Some((
                        Uuid::parse_str(r.get::<&str, _>(0)).ok()?,
                        Role::parse(r.get::<&str, _>(1))?,
                    ))
                })
                .collect(),
        )
    }
}

/// The clinic's tamper alerts, in the order they were raised.
pub async fn tamper_alerts(tx: &mut ClinicTx) -> Result<Vec<TamperAlert>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT device_id, device_seq, kind, hash, received_at_ms, logged_event_id FROM audit_alerts
         WHERE clinic_id = $1 ORDER BY id",
    )
    .bind(&clinic)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TamperAlert {
                device_id: stored_id(r.get::<&str, _>(0))?,
                device_seq: u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                kind: r.get(2),
                hash: Hash32::from_hex(r.get::<&str, _>(3))
                    .ok_or(ServerError::Internal("stored hash malformed"))?,
                received_at_ms: r.get(4),
                logged_event_id: r.get::<Option<&str>, _>(5).map(stored_id).transpose()?,
            })
        })
        .collect()
}

/// The clinic's revoked workstations that handed in events after their revocation, by
/// device id: how many, and their sequences.
pub async fn received_after_revocation(
    tx: &mut ClinicTx,
) -> Result<Vec<ReceivedAfterRevocation>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let rows = sqlx::query(
        "SELECT d.id, d.revoked_at_ms, count(*), min(e.device_seq), max(e.device_seq)
         FROM devices d JOIN audit_events e ON e.device_id = d.id
         WHERE d.clinic_id = $1 AND d.revoked_at_ms IS NOT NULL
           AND e.received_at_ms >= d.revoked_at_ms
         GROUP BY d.id, d.revoked_at_ms ORDER BY d.id",
    )
    .bind(&clinic)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let count = |i| u64::try_from(r.get::<i64, _>(i)).unwrap_or(0);
            Ok(ReceivedAfterRevocation {
                device_id: stored_id(r.get::<&str, _>(0))?,
                revoked_at_ms: r.get(1),
                events: count(2),
                from_seq: count(3),
                to_seq: count(4),
            })
        })
        .collect()
}

/// The clinic's newest flagged claims, newest first: each `claim_flagged` server event
/// with the workstation's event it names.
pub async fn flagged_claims(tx: &mut ClinicTx) -> Result<Vec<FlaggedClaim>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let flags = sqlx::query(
        "SELECT event_json FROM audit_events
         WHERE clinic_id = $1 AND action = $2 AND leaf_index IS NOT NULL
         ORDER BY occurred_at_ms DESC, id DESC LIMIT $3",
    )
    .bind(&clinic)
    .bind(AuditAction::ClaimFlagged.as_str())
    .bind(i64::try_from(MAX_FLAGGED_CLAIMS).unwrap_or(i64::MAX))
    .fetch_all(&mut **tx)
    .await?;
    let mut claims = Vec::with_capacity(flags.len());
    for flag in flags {
        let flag: AuditEvent = serde_json::from_str(flag.get::<&str, _>(0))
            .map_err(|_| ServerError::Internal("stored event malformed"))?;
        let Some(r) = sqlx::query(
            "SELECT device_id, device_seq, actor_user_id, occurred_at_ms, received_at_ms
             FROM audit_events WHERE id = $1 AND clinic_id = $2",
        )
        .bind(&flag.resource_id)
        .bind(&clinic)
        .fetch_optional(&mut **tx)
        .await?
        else {
            // The flag and its event are stored in one transaction; `audit verify` reports
            // the trail if one is missing.
            continue;
        };
        claims.push(FlaggedClaim {
            device_id: stored_id(r.get::<&str, _>(0))?,
            device_seq: u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
            event_id: stored_id(&flag.resource_id)?,
            actor_user_id: stored_id(r.get::<&str, _>(2))?,
            doubted: flag.fields,
            occurred_at_ms: r.get(3),
            received_at_ms: r.get(4),
        });
    }
    Ok(claims)
}

/// The clinic's devices with events stored past a gap in their chain, by device id.
pub async fn devices_behind(tx: &mut ClinicTx) -> Result<Vec<DeviceBehind>, ServerError> {
    let clinic = tx.clinic_id().to_string();
    let heads = sqlx::query(
        "SELECT device_id, contiguous_seq FROM audit_device_heads
         WHERE clinic_id = $1 AND max_seq > contiguous_seq ORDER BY device_id",
    )
    .bind(&clinic)
    .fetch_all(&mut **tx)
    .await?;
    heads
        .iter()
        .map(|head| {
            Ok(DeviceBehind {
                device_id: stored_id(head.get::<&str, _>(0))?,
                contiguous_seq: head.get(1),
            })
        })
        .collect()
}

/// The sequences of `device`'s stored events after `seq`, in order.
pub async fn sequences_after(
    tx: &mut ClinicTx,
    device: Uuid,
    seq: i64,
) -> Result<Vec<i64>, ServerError> {
    Ok(sqlx::query_scalar(
        "SELECT device_seq FROM audit_events WHERE device_id = $1 AND device_seq > $2 ORDER BY device_seq",
    )
    .bind(device.to_string())
    .bind(seq)
    .fetch_all(&mut **tx)
    .await?)
}

/// Every user of the clinic, by role then username, deactivated ones too.
pub async fn reviewed_users(tx: &mut ClinicTx) -> Result<Vec<ReviewedUser>, ServerError> {
    let users = sqlx::query(
        "SELECT u.id, u.username, u.display_name, u.role, u.active,
                EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = u.id),
                EXISTS (SELECT 1 FROM mfa_webauthn w WHERE w.user_id = u.id),
                (SELECT max(s.created_at_ms) FROM sessions s WHERE s.user_id = u.id)
         FROM users u WHERE u.clinic_id = $1 ORDER BY u.role, u.username",
    )
    .bind(tx.clinic_id().to_string())
    .fetch_all(&mut **tx)
    .await?;
    users
        .iter()
        .map(|u| {
            Ok(ReviewedUser {
                id: u.get(0),
                username: u.get(1),
                display_name: u.get(2),
                role: parse_role(u.get(3))?,
                active: flag(u, 4)?,
                totp: flag(u, 5)?,
                webauthn: flag(u, 6)?,
                last_sign_in_ms: u.get(7),
            })
        })
        .collect()
}

/// Which workstation each user of the clinic has signed in on: (user id as stored, device
/// name), by device name.
pub async fn workstations_used(tx: &mut ClinicTx) -> Result<Vec<(String, String)>, ServerError> {
    let stations = sqlx::query(
        "SELECT DISTINCT s.user_id, d.name FROM sessions s
         JOIN devices d ON d.id = s.device_id AND d.clinic_id = s.clinic_id
         WHERE s.clinic_id = $1 ORDER BY d.name",
    )
    .bind(tx.clinic_id().to_string())
    .fetch_all(&mut **tx)
    .await?;
    Ok(stations.iter().map(|s| (s.get(0), s.get(1))).collect())
}
