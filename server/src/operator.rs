//! Actions the clinic's operator takes on the server's console (no session): they name
//! the object, and the clinic scope comes from that object's own row.

use uuid::Uuid;

use crate::auth::ClinicScope;
use crate::clock::Clock;
use crate::error::ServerError;
use crate::store::Store;

/// Revokes a device and its sessions; its next request answers `device_revoked`, which
/// the app obeys by wiping itself. Returns false for an unknown device.
pub async fn revoke_device(
    store: &Store,
    clock: &dyn Clock,
    device_id: Uuid,
) -> Result<bool, ServerError> {
    let Some(device) = store.device(device_id).await? else {
        return Ok(false);
    };
    let scope = ClinicScope::provisioning(device.clinic_id);
    let revoked = store
        .revoke_device(&scope, device_id, clock.now_ms())
        .await?;
    tracing::info!(%device_id, "device revoked by the operator");
    Ok(revoked)
}
