//! Sending the outbox: one batch of waiting events to the server, and forgetting those its
//! signed receipt settles. Needs no user session: the events' device signatures are the
//! credential, so this runs while locked too.

use clinicdesk_protocol::wire::AuditUpload;

use super::Device;
use crate::error::AppError;
use crate::net::enrollment::save_enrollment;
use crate::net::receipt;
use crate::os::clock::Clock;

/// The most events sent in one upload.
const UPLOAD_BATCH: usize = 100;

/// What one upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::core) struct Sent {
    /// Events of the batch the receipt settled (stored, or re-chained to be sent again).
    pub settled: usize,
    /// The receipt says this device is revoked: the server kept only what was signed
    /// before that.
    pub revoked: bool,
}

impl Device {
    /// Sends one batch of waiting events, with the last receipt held (the server's check for
    /// a rollback of its store), and forgets those the server's receipt names.
    /// When the server refuses some as conflicting with its own copy of this device's
    /// chain, the waiting events are re-chained onto the server's head
    /// ([`crate::local::outbox::Outbox::rebase`]) and go out with the next batch. The
    /// server's refusals, and a receipt that says the device is revoked, come back as they
    /// are: what they mean for the session (a revoked device hands in what it can, then
    /// wipes itself) is the core's to decide.
    pub(in crate::core) async fn upload_batch(&self, clock: &dyn Clock) -> Result<Sent, AppError> {
        let nothing = Sent {
            settled: 0,
            revoked: false,
        };
        let Ok((enrollment, client)) = self.enrolled() else {
            return Ok(nothing);
        };
        self.ensure_outbox()?;
        let (events, held_receipt) = match &self.lock().outbox {
            Some(outbox) => (outbox.pending(UPLOAD_BATCH)?, outbox.held_receipt()?),
            None => return Ok(nothing),
        };
        let Some(sent_through) = events.last().map(|e| e.event.device_seq) else {
            return Ok(nothing);
        };
        let sent = events.len();
        let receipt = client
            .upload_audit(&AuditUpload {
                device_id: enrollment.device_id,
                events,
                held_receipt,
            })
            .await;
        self.note_network(&receipt);
        let receipt = receipt?;
        if let Some(successor) = receipt::check(&receipt, &enrollment)? {
            self.repin_audit_key(successor)?;
        }
        if let Some(outbox) = &self.lock().outbox {
            outbox.hold_receipt(&receipt)?;
        }
        let head = receipt.highest_contiguous_seq;
        if !receipt.forked.is_empty() {
            // Not PHI: sequence numbers. The server keeps the conflicting events as alerts.
            tracing::warn!(forked = ?receipt.forked, "server reports conflicting audit events");
            // Once per head: marked only after a re-chain that took, so a failed one is
            // tried again with the next batch.
            if self.lock().net.rebased_onto != Some(head) {
                let key = self.device_key()?;
                let onto = (head, receipt.contiguous_hash);
                let mut state = self.lock();
                if let Some(outbox) = &mut state.outbox {
                    let rebased = outbox.rebase(&key, sent_through, &receipt.forked, onto)?;
                    tracing::warn!(
                        rebased,
                        onto = head,
                        "audit chain re-chained onto the server's"
                    );
                }
                state.net.rebased_onto = Some(head);
                state.net.last_upload_ms = Some(clock.now_ms());
                drop(state);
                self.want_upload();
                return Ok(Sent {
                    settled: sent,
                    revoked: receipt.device_revoked,
                });
            }
        }
        let mut state = self.lock();
        let removed = match &mut state.outbox {
            Some(outbox) => outbox
                .acknowledge_through(receipt.highest_contiguous_seq, &receipt.contiguous_hash)?
                .ok_or(AppError::BadReceipt("contiguous_hash"))?,
            None => 0,
        };
        state.net.last_upload_ms = Some(clock.now_ms());
        Ok(Sent {
            settled: removed,
            revoked: receipt.device_revoked,
        })
    }

    /// Pins the server's new audit key, reached from the pinned one through rotation
    /// records it signed: later receipts are checked against it.
    fn repin_audit_key(&self, key: String) -> Result<(), AppError> {
        let mut state = self.lock();
        let Some(enrolled) = &mut state.enrolled else {
            return Err(AppError::Internal("not enrolled"));
        };
        let mut enrollment = enrolled.enrollment.clone();
        enrollment.audit_public_key = key;
        save_enrollment(&self.paths, &enrollment)?;
        enrolled.enrollment = enrollment;
        tracing::info!("the server's audit key was rotated: following it");
        Ok(())
    }

    /// How many events wait in the outbox (0 when it cannot be read).
    pub(in crate::core) fn pending_count(&self) -> u64 {
        self.lock()
            .outbox
            .as_ref()
            .and_then(|o| o.count().ok())
            .unwrap_or(0)
    }

    /// The sequence number of the last event this device signed (0 before the first).
    pub(in crate::core) fn outbox_last_seq(&self) -> Result<u64, AppError> {
        self.ensure_outbox()?;
        match &self.lock().outbox {
            Some(outbox) => Ok(outbox.last_seq()?),
            None => Err(AppError::Internal("outbox closed")),
        }
    }
}
