//! Checking the server's audit receipt before the outbox forgets anything: it must be
//! signed by the audit key pinned at enrollment, be about this device, carry a checkpoint
//! signed by the same key for this clinic, and prove that the last contiguous event is
//! in that checkpoint. A receipt that fails any of these changes nothing locally.

use clinicdesk_protocol::audit::from_hex;
use clinicdesk_protocol::wire::AuditReceipt;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::device::Enrollment;
use crate::error::AppError;

fn signed_by(key: &VerifyingKey, bytes: &[u8], signature_hex: &str) -> bool {
    from_hex(signature_hex)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .is_some_and(|b| key.verify_strict(bytes, &Signature::from_bytes(&b)).is_ok())
}

pub fn check(receipt: &AuditReceipt, enrollment: &Enrollment) -> Result<(), AppError> {
    let key = from_hex(&enrollment.audit_public_key)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
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
