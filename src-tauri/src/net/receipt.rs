//! Checking the server's audit receipt before the outbox forgets anything: it must be
//! signed by the audit key pinned at enrollment, be about this device, carry a checkpoint
//! signed by the same key for this clinic, and prove that the last contiguous event is
//! in that checkpoint. A receipt that fails any of these changes nothing locally.

use clinicdesk_protocol::signature::{PublicKey, verify_hex};
use clinicdesk_protocol::wire::AuditReceipt;

use super::enrollment::Enrollment;
use crate::error::AppError;

/// Signed by `key`, by the audit format's signature rule.
fn signed_by(key: &PublicKey, bytes: &[u8], signature_hex: &str) -> bool {
    verify_hex(key, bytes, signature_hex)
}

pub fn check(receipt: &AuditReceipt, enrollment: &Enrollment) -> Result<(), AppError> {
    let key = PublicKey::from_hex(&enrollment.audit_public_key)
        .ok_or(AppError::BadReceipt("pinned audit key"))?;
    if receipt.device_id != enrollment.device_id {
        return Err(AppError::BadReceipt("device_id"));
    }
    if !signed_by(&key, &receipt.canonical_bytes(), &receipt.signature) {
        return Err(AppError::BadReceipt("signature"));
    }
    let checkpoint = &receipt.checkpoint;
    if checkpoint.checkpoint.clinic_id != enrollment.clinic_id
        || !signed_by(
            &key,
            &checkpoint.checkpoint.canonical_bytes(),
            &checkpoint.signature,
        )
    {
        return Err(AppError::BadReceipt("checkpoint"));
    }
    receipt
        .check_inclusion()
        .map_err(|_| AppError::BadReceipt("inclusion"))
}

#[cfg(test)]
mod tests {
    use clinicdesk_protocol::audit::{Hash32, to_hex};
    use clinicdesk_protocol::merkle::{
        Checkpoint, InclusionEvidence, SignedCheckpoint, leaf_hash, node_hash,
    };
    use ed25519_dalek::{Signer, SigningKey};
    use uuid::Uuid;

    use super::*;

    const DEVICE: Uuid = Uuid::from_u128(4);
    const CLINIC: Uuid = Uuid::from_u128(2);

    fn enrollment(server: &SigningKey) -> Enrollment {
        Enrollment {
            device_id: DEVICE,
            clinic_id: CLINIC,
            clinic_name: "Clinic".into(),
            server_url: "https://127.0.0.1:1".into(),
            device_name: "Desk".into(),
            audit_public_key: to_hex(server.verifying_key().as_bytes()),
        }
    }

    /// A receipt for event `mine` as leaf 0 of a two-leaf log, signed by `server`.
    fn receipt(server: &SigningKey, mine: Hash32) -> AuditReceipt {
        let other = Hash32([7; 32]);
        let checkpoint = Checkpoint {
            clinic_id: CLINIC,
            tree_size: 2,
            root_hash: node_hash(&leaf_hash(&mine), &leaf_hash(&other)),
            issued_at_ms: 1,
        };
        let mut r = AuditReceipt {
            device_id: DEVICE,
            highest_contiguous_seq: 1,
            contiguous_hash: mine,
            forked: vec![],
            checkpoint: SignedCheckpoint {
                signature: to_hex(&server.sign(&checkpoint.canonical_bytes()).to_bytes()),
                checkpoint,
            },
            inclusion: Some(InclusionEvidence {
                leaf_index: 0,
                tree_size: 2,
                hashes: vec![leaf_hash(&other)],
            }),
            signature: String::new(),
            device_revoked: false,
        };
        resign(server, &mut r);
        r
    }

    fn resign(server: &SigningKey, r: &mut AuditReceipt) {
        r.signature = to_hex(&server.sign(&r.canonical_bytes()).to_bytes());
    }

    fn rejected(r: &AuditReceipt, e: &Enrollment) -> Option<&'static str> {
        match check(r, e) {
            Err(AppError::BadReceipt(what)) => Some(what),
            Ok(()) => None,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn only_a_receipt_the_pinned_key_signed_and_that_proves_its_event_passes() {
        let server = SigningKey::from_bytes(&[1; 32]);
        let e = enrollment(&server);
        let mine = Hash32([3; 32]);
        assert_eq!(rejected(&receipt(&server, mine), &e), None);

        let impostor = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(rejected(&receipt(&impostor, mine), &e), Some("signature"));

        let mut r = receipt(&server, mine);
        r.highest_contiguous_seq = 2;
        assert_eq!(
            rejected(&r, &e),
            Some("signature"),
            "field changed after signing"
        );

        let mut r = receipt(&server, mine);
        r.device_id = Uuid::from_u128(5);
        resign(&server, &mut r);
        assert_eq!(rejected(&r, &e), Some("device_id"));

        let mut r = receipt(&server, mine);
        r.checkpoint.checkpoint.clinic_id = Uuid::from_u128(6);
        resign(&server, &mut r);
        assert_eq!(rejected(&r, &e), Some("checkpoint"));

        // Signed, but the proof does not put this hash under the checkpoint's root.
        let mut r = receipt(&server, mine);
        r.contiguous_hash = Hash32([8; 32]);
        resign(&server, &mut r);
        assert_eq!(rejected(&r, &e), Some("inclusion"));

        let mut r = receipt(&server, mine);
        r.inclusion = None;
        assert_eq!(rejected(&r, &e), Some("inclusion"));

        let mut unpinned = e.clone();
        unpinned.audit_public_key = String::new();
        assert_eq!(
            rejected(&receipt(&server, mine), &unpinned),
            Some("pinned audit key")
        );
    }
}
