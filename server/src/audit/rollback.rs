//! Rollback detection. Each upload carries the last receipt its workstation accepted
//! (`AuditUpload::held_receipt`): the server's own signed word of how far it held that
//! device's chain, and of a checkpoint of the clinic's log. A server whose store has lost
//! that since (restored from an older backup, or its database rolled back) cannot show it
//! again: the checkpoint of that size is missing or has another root, or the device's event
//! at the receipt's head is missing or another.
//!
//! Then, in the upload's transaction, a `rollback` tamper alert is kept for the clinic's
//! admins (the receipt as its evidence, logged by a `tamper_alert` server event), and an
//! error is logged for the operator. The device's chain is taken on from the receipt's
//! head, which the receipt vouches for: the events the device still holds link to it, are
//! stored and acknowledged, instead of waiting for ever behind events the server lost (the
//! device forgot those when their receipt came). The lost ones show as a gap in
//! `audit verify`'s report.

use clinicdesk_protocol::audit::Hash32;
use clinicdesk_protocol::rotation::ServerKeys;
use clinicdesk_protocol::wire::{AuditReceipt, AuditUpload};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::key::verify_hex;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::{Alert, Evidence, Store};

/// The alert kind, as `audit_alerts` and `TamperAlert` name it.
pub const KIND: &str = "rollback";

/// A held receipt the server's audit key signed for the uploading device.
pub(crate) struct Held<'a> {
    receipt: &'a AuditReceipt,
    digest: Hash32,
}

/// Whether the server's audit key (the one in force when it was issued) signed `receipt`
/// and its checkpoint. Also what `audit verify` asks of a stored `rollback` alert.
pub(crate) fn signed_by_server(keys: &ServerKeys, receipt: &AuditReceipt) -> bool {
    let checkpoint = &receipt.checkpoint;
    let key = keys.at(checkpoint.checkpoint.issued_at_ms);
    verify_hex(key, &receipt.canonical_bytes(), &receipt.signature)
        && verify_hex(
            key,
            &checkpoint.checkpoint.canonical_bytes(),
            &checkpoint.signature,
        )
}

/// The upload's held receipt, if the server (`keys`) signed it for this device of this
/// clinic. One that it did not proves nothing (a server whose audit key was rotated after
/// the backup it was restored from cannot check its later receipts either): it is passed
/// over, logged.
pub(crate) fn authentic<'a>(
    keys: &ServerKeys,
    scope: &ClinicScope,
    device: Uuid,
    upload: &'a AuditUpload,
) -> Option<Held<'a>> {
    let receipt = upload.held_receipt.as_ref()?;
    let ours = receipt.device_id == device
        && receipt.checkpoint.checkpoint.clinic_id == scope.clinic_id()
        && signed_by_server(keys, receipt);
    if !ours {
        tracing::warn!(device_id = %device,
            "an upload's held receipt is not one this server can verify: passed over");
        return None;
    }
    Some(Held {
        receipt,
        digest: receipt.digest(),
    })
}

/// What the store no longer holds of a held receipt.
pub(crate) struct Rollback<'a> {
    held: Held<'a>,
    /// The device's head as the receipt vouches for it, when the store's is behind it: the
    /// chain goes on from here.
    pub(crate) resume_from: Option<(u64, Hash32)>,
}

/// Whether the store still holds what `held` says the server held; call it in the upload's
/// transaction, the clinic locked. `head_seq` is the device's stored contiguous head.
pub(crate) async fn judge<'a>(
    tx: &mut AnyConnection,
    clinic: Uuid,
    held: Held<'a>,
    head_seq: u64,
) -> Result<Option<Rollback<'a>>, ServerError> {
    let r = held.receipt;
    let checkpoint = &r.checkpoint.checkpoint;
    // Every checkpoint a receipt carries was stored when it was signed (one per size).
    let log_holds = Store::checkpoint_at(&mut *tx, clinic, checkpoint.tree_size)
        .await?
        .is_some_and(|stored| stored.checkpoint.root_hash == checkpoint.root_hash);
    let seq = r.highest_contiguous_seq;
    let chain_holds = seq == 0
        || Store::event_link(&mut *tx, r.device_id, seq)
            .await?
            .is_some_and(|(hash, _)| hash == r.contiguous_hash);
    if log_holds && chain_holds {
        return Ok(None);
    }
    Ok(Some(Rollback {
        resume_from: (seq > head_seq).then_some((seq, r.contiguous_hash)),
        held,
    }))
}

impl Rollback<'_> {
    /// Whether this held receipt's alert is stored already (the same receipt sent again).
    pub(crate) async fn alerted(&self, tx: &mut AnyConnection) -> Result<bool, ServerError> {
        let r = self.held.receipt;
        Store::alert_stored(tx, r.device_id, r.highest_contiguous_seq, &self.held.digest).await
    }

    /// What the alert's `tamper_alert` server event names: the held receipt's digest.
    pub(crate) fn resource_id(&self) -> String {
        self.held.digest.to_hex()
    }

    /// Keeps the alert, the receipt as its evidence, in the caller's transaction (beside
    /// its server event, `logged_event_id`), and logs it for the operator.
    pub(crate) async fn keep(
        &self,
        tx: &mut AnyConnection,
        scope: &ClinicScope,
        logged_event_id: Uuid,
        now_ms: i64,
    ) -> Result<(), ServerError> {
        let receipt = self.held.receipt;
        let evidence = receipt.held();
        let alert = Alert {
            evidence: Evidence::Receipt(&evidence),
            hash: &self.held.digest,
            kind: KIND,
            received_at_ms: now_ms,
            logged_event_id,
        };
        Store::insert_alert(tx, scope, alert).await?;
        tracing::error!(
            clinic_id = %scope.clinic_id(),
            device_id = %receipt.device_id,
            held_seq = receipt.highest_contiguous_seq,
            held_tree_size = receipt.checkpoint.checkpoint.tree_size,
            resumed = self.resume_from.is_some(),
            "audit rollback: a workstation holds a receipt for more than this server now holds \
             (restored from an older backup?); tamper alert recorded for the clinic's admins"
        );
        Ok(())
    }
}
