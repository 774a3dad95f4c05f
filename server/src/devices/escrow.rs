//! Escrowed device secrets: a workstation whose OS keychain lost its device secret gets the
//! copy it left at enrollment back, and only it: from a recovery sign-in on that device (the
//! password, the device proof signed by the recovery key, and a second factor proven afresh,
//! never a grant), proving the recovery key again over a fresh nonce. Any other session is
//! refused (`403`, field `session`). No audit, no release: `device_secret_released` commits
//! before the secret leaves.

use clinicdesk_protocol::audit::{AuditAction, RequestSeen};
use clinicdesk_protocol::wire::{EscrowRelease, escrow_proof_bytes};
use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use crate::audit::key::verify_strict_hex;
use crate::audit::server_chain::{self, security_event};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Principal};
use crate::session::live_device;
use crate::state::AppState;

/// Releases the escrowed device secret of the caller's device, when the caller's session is
/// a recovery sign-in and `req` proves the recovery key; `NotFound` if the clinic holds no
/// escrow for it.
pub async fn release(
    state: &AppState,
    scope: &ClinicScope,
    caller: &Principal,
    req: &EscrowRelease,
    seen: RequestSeen,
) -> Result<Zeroizing<Vec<u8>>, ServerError> {
    // A session from the device key (with or without a grant) proves only what the disk
    // holds; the secret comes back only after the recovery key and a fresh second factor.
    if !caller.recovery_sign_in {
        return Err(ServerError::ForbiddenField { field: "session" });
    }
    let user = &caller.user;
    let device = live_device(state, caller.device_id).await?;
    let now = state.clock.now_ms();
    if !state.store.take_nonce(&req.nonce, device.id, now).await? {
        return Err(ServerError::InvalidSignature { field: "nonce" });
    }
    let recovery_key = state
        .store
        .recovery_key(scope, device.id)
        .await?
        .ok_or(ServerError::NotFound)?;
    let key = VerifyingKey::from_bytes(&recovery_key)
        .map_err(|_| ServerError::Internal("stored recovery key invalid"))?;
    let proof = escrow_proof_bytes(&req.nonce, device.id);
    if !verify_strict_hex(&key, &proof, &req.recovery_signature) {
        return Err(ServerError::InvalidSignature {
            field: "recovery_signature",
        });
    }
    let sealed = state
        .store
        .sealed_device_secret(scope, device.id)
        .await?
        .ok_or(ServerError::NotFound)?;
    let secret = state.escrow.open(device.id, &sealed)?;
    // No audit, no release: the event commits before the secret leaves.
    let event = security_event(
        user,
        AuditAction::DeviceSecretReleased,
        "Device",
        device.id.to_string(),
        "release_escrow",
        seen,
    );
    server_chain::record(state, scope, vec![event]).await?;
    tracing::info!(device_id = %device.id, by = %user.user_id, "escrowed device secret released");
    Ok(secret)
}
