//! The audit outbox: this device's signed, hash-chained events waiting for the server's
//! receipt. It is its own SQLCipher database keyed from the device secret alone (not a
//! user's password), so events recorded before a lock keep uploading while the app is
//! locked, and one device chain spans every user of the workstation. An event is deleted
//! only up to the sequence number a verified server receipt says it holds; the last such
//! receipt is kept and sent back with each upload (rollback detection on the server).

use std::path::Path;

use clinicdesk_protocol::audit::{AuditEvent, Hash32, SignedAuditEvent};
use clinicdesk_protocol::wire::{AuditReceipt, UserInfo};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::db::{self, DbError};
use crate::secrets::device_key::DeviceKey;

const MIGRATIONS: &[&str] = &[
    "
-- Signed audit events not yet acknowledged by the server, in device order.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_json TEXT NOT NULL
);
-- The last event this device signed: the chain continues from here.
CREATE TABLE chain_tip (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
",
    "
-- The last receipt the server gave this device that checked out, its signed parts: sent
-- back with each upload, so a server restored from an older backup can tell (a rollback).
CREATE TABLE held_receipt (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    receipt_json TEXT NOT NULL
);
",
];

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
    /// Set when the record was read under a break-glass grant.
    pub break_glass: Option<clinicdesk_protocol::audit::BreakGlass>,
}

/// Who signs: the device, on behalf of the signed-in user.
pub struct Signer<'a> {
    pub key: &'a DeviceKey,
    pub device_id: Uuid,
    pub user: &'a UserInfo,
}

pub struct Outbox {
    conn: Connection,
}

impl Outbox {
    pub fn open(path: &Path, key: &Zeroizing<[u8; 32]>) -> Result<Self, DbError> {
        Ok(Self {
            conn: db::open_encrypted(path, key, MIGRATIONS)?,
        })
    }

    /// Signs and appends the next event of this device's chain in one transaction, and
    /// returns it once committed.
    pub fn append(
        &mut self,
        signer: &Signer<'_>,
        draft: Draft,
        now_ms: i64,
    ) -> Result<SignedAuditEvent, DbError> {
        let tx = self.conn.transaction()?;
        let signed = Self::append_in(&tx, signer, draft, now_ms)?;
        tx.commit()?;
        Ok(signed)
    }

    /// [`Outbox::append`] for several events at once, in one transaction: all are
    /// committed or none is.
    pub fn append_all(
        &mut self,
        signer: &Signer<'_>,
        drafts: Vec<Draft>,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        for draft in drafts {
            Self::append_in(&tx, signer, draft, now_ms)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn append_in(
        tx: &rusqlite::Transaction<'_>,
        signer: &Signer<'_>,
        draft: Draft,
        now_ms: i64,
    ) -> Result<SignedAuditEvent, DbError> {
        let tip: Option<(i64, String)> = tx
            .query_row("SELECT seq, hash FROM chain_tip WHERE one = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let (seq, prev_hash) = match tip {
            Some((seq, hash)) => (
                u64::try_from(seq).map_err(|_| DbError::Malformed)? + 1,
                Hash32::from_hex(&hash).ok_or(DbError::Malformed)?,
            ),
            None => (1, Hash32::GENESIS),
        };
        let event = AuditEvent {
            id: Uuid::now_v7(),
            clinic_id: signer.user.clinic_id,
            actor_user_id: signer.user.user_id,
            actor_role: signer.user.role,
            recorded_by: clinicdesk_protocol::audit::Recorder::Device,
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
            break_glass: draft.break_glass,
            request: None,
            prev_hash,
            change: None,
        };
        let signed = SignedAuditEvent {
            signature: signer.key.sign_hex(&event.canonical_bytes()),
            event,
        };
        let seq_i64 = i64::try_from(seq).map_err(|_| DbError::Malformed)?;
        let json = serde_json::to_string(&signed).map_err(|_| DbError::Malformed)?;
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
    pub fn pending(&self, limit: usize) -> Result<Vec<SignedAuditEvent>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT event_json FROM outbox ORDER BY seq LIMIT ?1")?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|json| serde_json::from_str(&json?).map_err(|_| DbError::Malformed))
            .collect()
    }

    pub fn count(&self) -> Result<u64, DbError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The sequence number of the last event this device signed (0 before the first).
    pub fn last_seq(&self) -> Result<u64, DbError> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT seq FROM chain_tip WHERE one = 1", [], |r| r.get(0))
            .optional()?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }

    /// The last receipt kept by [`Outbox::hold_receipt`], if any.
    pub fn held_receipt(&self) -> Result<Option<AuditReceipt>, DbError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT receipt_json FROM held_receipt WHERE one = 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| serde_json::from_str(&j).map_err(|_| DbError::Malformed))
            .transpose()
    }

    /// Keeps a verified receipt's signed parts ([`AuditReceipt::held`]) in place of the one
    /// before: the newest word of the server, whatever it says (after a rollback the server's
    /// next receipt names a smaller log, and that is the one to send back from then on).
    pub fn hold_receipt(&self, receipt: &AuditReceipt) -> Result<(), DbError> {
        let json = serde_json::to_string(&receipt.held()).map_err(|_| DbError::Malformed)?;
        self.conn.execute(
            "INSERT INTO held_receipt (one, receipt_json) VALUES (1, ?1)
             ON CONFLICT (one) DO UPDATE SET receipt_json = excluded.receipt_json",
            [json],
        )?;
        Ok(())
    }

    /// Re-chains this device's waiting events onto the server's head after the server
    /// refused some of a sent batch as conflicting with events it already holds under the
    /// same sequence numbers (a workstation restored from an old backup, or a cloned one):
    /// the server keeps each refused original as a tamper alert, and without this every
    /// later event would conflict too and none would reach the log.
    ///
    /// Kept: the refused events (`refused`) and everything recorded after the batch
    /// (`sent_through`); dropped: the rest of the batch, which the server stored. The kept
    /// events are signed again, in their order, as the next sequence numbers after
    /// `onto` (the head the server's verified receipt names), with their ids, times and
    /// content unchanged, so an event's alert and its place in the log share its id.
    /// Returns how many were re-chained.
    pub fn rebase(
        &mut self,
        key: &DeviceKey,
        sent_through: u64,
        refused: &[u64],
        onto: (u64, Hash32),
    ) -> Result<usize, DbError> {
        let tx = self.conn.transaction()?;
        let waiting: Vec<SignedAuditEvent> = {
            let mut stmt = tx.prepare("SELECT event_json FROM outbox ORDER BY seq")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|json| serde_json::from_str(&json?).map_err(|_| DbError::Malformed))
                .collect::<Result<_, _>>()?
        };
        tx.execute("DELETE FROM outbox", [])?;
        let (mut seq, mut prev_hash) = onto;
        for mut signed in waiting {
            let e = &signed.event;
            if e.device_seq <= sent_through && !refused.contains(&e.device_seq) {
                continue;
            }
            seq += 1;
            signed.event.device_seq = seq;
            signed.event.prev_hash = prev_hash;
            signed.signature = key.sign_hex(&signed.event.canonical_bytes());
            prev_hash = signed.event.hash();
            let json = serde_json::to_string(&signed).map_err(|_| DbError::Malformed)?;
            tx.execute(
                "INSERT INTO outbox (seq, id, event_json) VALUES (?1, ?2, ?3)",
                params![
                    i64::try_from(seq).map_err(|_| DbError::Malformed)?,
                    signed.event.id.to_string(),
                    json
                ],
            )?;
        }
        tx.execute(
            "INSERT INTO chain_tip (one, seq, hash) VALUES (1, ?1, ?2)
             ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            params![
                i64::try_from(seq).map_err(|_| DbError::Malformed)?,
                prev_hash.to_hex()
            ],
        )?;
        let rebased = usize::try_from(seq - onto.0).map_err(|_| DbError::Malformed)?;
        tx.commit()?;
        Ok(rebased)
    }

    /// Forgets every event up to `seq`, which the server's verified receipt says it holds
    /// contiguously with `hash` as the last one. If this outbox still holds its own event at
    /// `seq` and that is a different event, the server holds someone else's chain: nothing
    /// is forgotten and the answer is `None`. Otherwise: how many events were removed.
    pub fn acknowledge_through(
        &mut self,
        seq: u64,
        hash: &Hash32,
    ) -> Result<Option<usize>, DbError> {
        let seq = i64::try_from(seq).map_err(|_| DbError::Malformed)?;
        let tx = self.conn.transaction()?;
        let mine: Option<String> = tx
            .query_row("SELECT event_json FROM outbox WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(json) = mine {
            let signed: SignedAuditEvent =
                serde_json::from_str(&json).map_err(|_| DbError::Malformed)?;
            if signed.event.hash() != *hash {
                return Ok(None);
            }
        }
        let removed = tx.execute("DELETE FROM outbox WHERE seq <= ?1", [seq])?;
        tx.commit()?;
        Ok(Some(removed))
    }
}
