//! `/v1/audit`: device uploads and the server's signed receipt, search, and tamper and gap
//! alerts.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{AuditEvent, Hash32, SignedAuditEvent};
use crate::merkle::{InclusionEvidence, ProofError, SignedCheckpoint, verify_inclusion};
use crate::proof;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditUpload {
    /// The device that signed every event in the batch; its registered key is the
    /// upload's credential, so a locked app keeps uploading without a user session.
    pub device_id: Uuid,
    pub events: Vec<SignedAuditEvent>,
    /// The last receipt this device accepted from the server ([`AuditReceipt::held`]: its
    /// signed parts): the server's own word of how much of this device's chain, and of the
    /// clinic's log, it held. A server that no longer holds that (restored from an older
    /// backup) records a `rollback` tamper alert, and takes this device's chain on from the
    /// receipt's head so that what the device still holds is stored. Absent before the
    /// first receipt (and from apps older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_receipt: Option<AuditReceipt>,
}

/// The server's signed answer to an upload. The client forgets its events up to
/// `highest_contiguous_seq` only after checking the signature (with the audit key it
/// pinned at enrollment), that `contiguous_hash` is the hash of its own event at that
/// sequence, and that `inclusion` proves that event is in the signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditReceipt {
    pub device_id: Uuid,
    /// The highest device sequence number stored with every one before it (0: none).
    pub highest_contiguous_seq: u64,
    /// The hash of the stored event at `highest_contiguous_seq` (zeros when 0).
    pub contiguous_hash: Hash32,
    /// Sequence numbers of this batch at which the server already holds a *different*
    /// event: kept as tamper alerts for the clinic's admins, never stored as the chain.
    pub forked: Vec<u64>,
    /// The clinic's log, signed, including the event at `highest_contiguous_seq`.
    pub checkpoint: SignedCheckpoint,
    /// Inclusion of that event in `checkpoint` (absent when `highest_contiguous_seq` is 0).
    pub inclusion: Option<InclusionEvidence>,
    /// Ed25519 of [`AuditReceipt::canonical_bytes`] by the server's audit key, hex.
    pub signature: String,
    /// The device is revoked: the server stored only what it signed before that, and the
    /// device is to hand in what else it can and then wipe itself. Outside the signed
    /// bytes: like a `device_revoked` refusal, it is the pinned TLS channel's word.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub device_revoked: bool,
    /// The rotations of the server's audit key, oldest first, when it was ever rotated:
    /// a device whose pinned key is an older one follows them (each signed by the key
    /// before it) to the key that signed this receipt. Outside the signed bytes: the
    /// records carry their own signatures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<crate::rotation::KeyRotation>,
}

impl AuditReceipt {
    /// The bytes the server signs ([`proof::receipt_bytes`], the layout in
    /// `docs/audit-format.md`, "Receipt").
    pub fn canonical_bytes(&self) -> Vec<u8> {
        proof::receipt_bytes(
            self.device_id,
            self.highest_contiguous_seq,
            &self.contiguous_hash,
            &self.forked,
            &self.checkpoint.checkpoint,
        )
    }

    /// What a device keeps of this receipt to send back with its next upload
    /// ([`AuditUpload::held_receipt`]): the signed parts, without the proof, the rotation
    /// records or the revocation flag.
    pub fn held(&self) -> AuditReceipt {
        AuditReceipt {
            inclusion: None,
            device_revoked: false,
            rotations: Vec::new(),
            ..self.clone()
        }
    }

    /// SHA-256 of the signed bytes: what names a receipt (a `rollback` alert's hash).
    pub fn digest(&self) -> Hash32 {
        Hash32::of_canonical(&self.canonical_bytes())
    }

    /// Checks the inclusion proof of the contiguous event against the checkpoint (the
    /// signatures are checked by the holder of the server's key).
    pub fn check_inclusion(&self) -> Result<(), ProofError> {
        let cp = &self.checkpoint.checkpoint;
        match (&self.inclusion, self.highest_contiguous_seq) {
            (None, 0) => Ok(()),
            (Some(p), seq) if seq > 0 && p.tree_size == cp.tree_size => verify_inclusion(
                &cp.root_hash,
                cp.tree_size,
                p.leaf_index,
                &self.contiguous_hash,
                &p.hashes,
            ),
            _ => Err(ProofError::Invalid),
        }
    }
}

/// One stored audit event as the search returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    pub event: AuditEvent,
    pub signature: String,
    pub received_at_ms: i64,
    /// Its place in the clinic's Merkle log.
    pub leaf_index: u64,
}

/// A page of search results, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub events: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A signed event that contradicts a device's stored chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TamperAlert {
    pub device_id: Uuid,
    /// The refused event's sequence; for a `rollback`, the held receipt's
    /// `highest_contiguous_seq`.
    pub device_seq: u64,
    /// `fork` (a different event at a stored sequence), `chain_break`, `unknown_actor`
    /// (an actor who never signed in on the workstation), or `rollback` (the workstation
    /// holds a receipt for more than the server now holds: it was restored from an older
    /// backup, or its store was rolled back).
    pub kind: String,
    /// The refused event's hash; for a `rollback`, the held receipt's
    /// ([`AuditReceipt::digest`]).
    pub hash: Hash32,
    pub received_at_ms: i64,
    /// The `tamper_alert` event that records this alert in the clinic's log (its inclusion
    /// proof: `GET /v1/audit/events/{id}/inclusion`).
    pub logged_event_id: Option<Uuid>,
}

/// Device sequences the server has not received although later ones arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutstandingRange {
    pub device_id: Uuid,
    pub from_seq: u64,
    pub to_seq: u64,
}

impl std::fmt::Display for OutstandingRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device {} is missing {} to {}",
            self.device_id, self.from_seq, self.to_seq
        )
    }
}

/// Events a revoked workstation handed in after its revocation (signed before it; each is
/// also flagged in the log by a `received_after_revocation` server event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceivedAfterRevocation {
    pub device_id: Uuid,
    pub revoked_at_ms: i64,
    /// How many of its events arrived after the revocation, and their sequence range.
    pub events: u64,
    pub from_seq: u64,
    pub to_seq: u64,
}

/// A workstation's stored event whose claims the server doubts (each also flagged in the
/// log by a `claim_flagged` server event): the role it names is not the one its actor
/// signed in with there, or its time is before the workstation's enrollment (or the
/// actor's first sign-in there) or ahead of the server's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlaggedClaim {
    pub device_id: Uuid,
    pub device_seq: u64,
    pub event_id: Uuid,
    pub actor_user_id: Uuid,
    /// The claims in doubt: `actor_role`, `occurred_at_ms`.
    pub doubted: Vec<String>,
    /// The time the workstation signed, and when the server received the event.
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditAlerts {
    pub tamper: Vec<TamperAlert>,
    pub outstanding: Vec<OutstandingRange>,
    #[serde(default)]
    pub received_after_revocation: Vec<ReceivedAfterRevocation>,
    /// The newest [`MAX_FLAGGED_CLAIMS`] flagged events, newest first.
    #[serde(default)]
    pub flagged_claims: Vec<FlaggedClaim>,
}

/// Most flagged claims the alerts list.
pub const MAX_FLAGGED_CLAIMS: usize = 200;
