//! The audit outbox: signed, hash-chained events waiting for the server's receipt. An
//! event is appended in the same transaction as the local write it describes, and is
//! deleted only for the ids the server's receipt names as stored.

use clinicdesk_protocol::audit::{AuditEvent, Hash32, SignedAuditEvent};
use clinicdesk_protocol::wire::UserInfo;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use uuid::Uuid;

use crate::cache::CacheError;
use crate::device::DeviceKey;

/// What happened, before the outbox gives it a place in the chain.
#[derive(Debug, Clone)]
pub struct Draft {
    pub action: clinicdesk_protocol::audit::AuditAction,
    pub resource_type: &'static str,
    pub resource_id: String,
    pub patient_id: Option<Uuid>,
    pub fields: Vec<String>,
    pub offline: bool,
    pub route: &'static str,
}

/// Who signs: the device, on behalf of the signed-in user.
pub struct Signer<'a> {
    pub key: &'a DeviceKey,
    pub device_id: Uuid,
    pub user: &'a UserInfo,
}

/// Appends the next event of this device's chain and returns it.
pub fn append(
    tx: &Transaction<'_>,
    signer: &Signer<'_>,
    draft: Draft,
    now_ms: i64,
) -> Result<SignedAuditEvent, CacheError> {
    let tip: Option<(i64, String)> = tx
        .query_row("SELECT seq, hash FROM chain_tip WHERE one = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let (seq, prev_hash) = match tip {
        Some((seq, hash)) => (
            u64::try_from(seq).map_err(|_| CacheError::Malformed)? + 1,
            Hash32::from_hex(&hash).ok_or(CacheError::Malformed)?,
        ),
        None => (1, Hash32::GENESIS),
    };
    let event = AuditEvent {
        id: Uuid::now_v7(),
        clinic_id: signer.user.clinic_id,
        actor_user_id: signer.user.user_id,
        actor_role: signer.user.role,
        device_id: signer.device_id,
        device_seq: seq,
        action: draft.action,
        resource_type: draft.resource_type.to_owned(),
        resource_id: draft.resource_id,
        patient_id: draft.patient_id,
        fields: draft.fields,
        outcome: clinicdesk_protocol::audit::Outcome::Success,
        occurred_at_ms: now_ms,
        offline: draft.offline,
        route: draft.route.to_owned(),
        prev_hash,
    };
    let signed = SignedAuditEvent {
        signature: signer.key.sign_hex(&event.canonical_bytes()),
        event,
    };
    let seq_i64 = i64::try_from(seq).map_err(|_| CacheError::Malformed)?;
    let json = serde_json::to_string(&signed).map_err(|_| CacheError::Malformed)?;
    tx.execute(
        "INSERT INTO outbox (seq, id, event_json) VALUES (?1, ?2, ?3)",
        params![seq_i64, signed.event.id.to_string(), json],
    )?;
    tx.execute(
        "INSERT INTO chain_tip (one, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![seq_i64, signed.event.hash().to_hex()],
    )?;
    Ok(signed)
}

/// The oldest `limit` events waiting for upload, in chain order.
pub fn pending(conn: &Connection, limit: usize) -> Result<Vec<SignedAuditEvent>, CacheError> {
    let mut stmt = conn.prepare("SELECT event_json FROM outbox ORDER BY seq LIMIT ?1")?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        r.get::<_, String>(0)
    })?;
    rows.map(|json| serde_json::from_str(&json?).map_err(|_| CacheError::Malformed))
        .collect()
}

pub fn count(conn: &Connection) -> Result<u64, CacheError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Forgets the events the server's receipt says it stored.
pub fn acknowledge(conn: &Connection, stored: &[Uuid]) -> Result<usize, CacheError> {
    let mut stmt = conn.prepare("DELETE FROM outbox WHERE id = ?1")?;
    let mut removed = 0;
    for id in stored {
        removed += stmt.execute([id.to_string()])?;
    }
    Ok(removed)
}
