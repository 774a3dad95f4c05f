//! Checking the server's audit receipt before the outbox forgets anything: it must be
//! signed by the audit key pinned at enrollment (or by its successor, reached through the
//! rotation records the receipt carries, each signed by the key before it), be about this
//! device, carry a checkpoint signed by the key in force when it was issued for this
//! clinic, and prove that the last contiguous event is in that checkpoint. A receipt that
//! fails any of these changes nothing locally.

use clinicdesk_protocol::rotation::ServerKeys;
use clinicdesk_protocol::signature::{PublicKey, verify_hex};
use clinicdesk_protocol::wire::AuditReceipt;

use super::enrollment::Enrollment;
use crate::error::AppError;

/// Signed by `key`, by the audit format's signature rule.
fn signed_by(key: &PublicKey, bytes: &[u8], signature_hex: &str) -> bool {
    verify_hex(key, bytes, signature_hex)
}

/// The pinned key and its successors, from the receipt's rotation records that start at
/// the pin: records that do not chain from it are ignored, so they can only ever lead
/// where the pinned key's own signature points.
fn keys_from_pin(pinned: PublicKey, receipt: &AuditReceipt) -> ServerKeys {
    let pinned_hex = pinned.to_hex();
    let from_pin: Vec<_> = receipt
        .rotations
        .iter()
        .skip_while(|r| r.old_key != pinned_hex)
        .cloned()
        .collect();
    let end = clinicdesk_protocol::rotation::follow(&pinned, &from_pin);
    ServerKeys::from_rotations(end, &from_pin).unwrap_or_else(|_| ServerKeys::single(pinned))
}

/// Checks the receipt; answers the key to pin from now on (hex) when the receipt was
/// signed by a successor of the pinned key.
pub fn check(receipt: &AuditReceipt, enrollment: &Enrollment) -> Result<Option<String>, AppError> {
    let pinned = PublicKey::from_hex(&enrollment.audit_public_key)
        .ok_or(AppError::BadReceipt("pinned audit key"))?;
    if receipt.device_id != enrollment.device_id {
        return Err(AppError::BadReceipt("device_id"));
    }
    let keys = keys_from_pin(pinned, receipt);
    let key = keys.current();
    if !signed_by(key, &receipt.canonical_bytes(), &receipt.signature) {
        return Err(AppError::BadReceipt("signature"));
    }
    let checkpoint = &receipt.checkpoint;
    if checkpoint.checkpoint.clinic_id != enrollment.clinic_id
        || !signed_by(
            keys.at(checkpoint.checkpoint.issued_at_ms),
            &checkpoint.checkpoint.canonical_bytes(),
            &checkpoint.signature,
        )
    {
        return Err(AppError::BadReceipt("checkpoint"));
    }
    receipt
        .check_inclusion()
        .map_err(|_| AppError::BadReceipt("inclusion"))?;
    Ok((*key != pinned).then(|| key.to_hex()))
}

#[cfg(test)]
mod tests {
    use clinicdesk_protocol::audit::{Hash32, to_hex};
    use clinicdesk_protocol::merkle::{
        Checkpoint, InclusionEvidence, SignedCheckpoint, leaf_hash, node_hash,
    };
    use clinicdesk_protocol::rotation::KeyRotation;
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
            rotations: Vec::new(),
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
            Ok(_) => None,
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

    fn rotation(old: &SigningKey, new: &SigningKey, at_ms: i64) -> KeyRotation {
        let key = |k: &SigningKey| PublicKey::from_hex(&to_hex(k.verifying_key().as_bytes()));
        let (o, n) = (key(old).unwrap(), key(new).unwrap());
        KeyRotation {
            old_key: o.to_hex(),
            new_key: n.to_hex(),
            at_ms,
            signature: to_hex(
                &old.sign(&KeyRotation::signed_bytes(&o, &n, at_ms))
                    .to_bytes(),
            ),
        }
    }

    #[test]
    fn a_successor_the_pinned_key_signed_for_is_followed_and_nothing_else() {
        let (old, new) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let e = enrollment(&old);
        let mine = Hash32([3; 32]);
        let new_hex = to_hex(new.verifying_key().as_bytes());

        // Signed by the successor, the record from the pinned key with it: pin moves.
        let mut r = receipt(&new, mine);
        r.rotations = vec![rotation(&old, &new, 0)];
        assert_eq!(check(&r, &e).unwrap(), Some(new_hex.clone()));
        // Without the record, the successor is a stranger.
        r.rotations.clear();
        assert_eq!(rejected(&r, &e), Some("signature"));
        // A record the new key signed for itself is no record.
        r.rotations = vec![rotation(&new, &new, 0)];
        r.rotations[0].old_key = e.audit_public_key.clone();
        assert_eq!(rejected(&r, &e), Some("signature"));

        // A checkpoint issued before the rotation, signed by the old key, still passes.
        let mut r = receipt(&new, mine);
        r.rotations = vec![rotation(&old, &new, 10)];
        let cp = r.checkpoint.checkpoint.clone();
        assert!(cp.issued_at_ms < 10);
        r.checkpoint.signature = to_hex(&old.sign(&cp.canonical_bytes()).to_bytes());
        resign(&new, &mut r);
        assert_eq!(check(&r, &e).unwrap(), Some(new_hex));
        // But not one signed by the new key before it took over.
        r.checkpoint.signature = to_hex(&new.sign(&cp.canonical_bytes()).to_bytes());
        resign(&new, &mut r);
        assert_eq!(rejected(&r, &e), Some("checkpoint"));

        // A receipt from the pinned key itself keeps the pin.
        assert_eq!(check(&receipt(&old, mine), &e).unwrap(), None);
    }
}
