//! The clinic's workstations as its admins see them: who let each in, when it was last
//! seen and with which app, how its audit trail stands, and what its users' offline
//! copies hold (counts). A workstation enters it by
//! redeeming a one-time code ([`enroll_workstation`]) and leaves it when an admin or the
//! operator revokes it.

use clinicdesk_protocol::audit::{AuditAction, Outcome, RequestSeen, from_hex};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{
    DeviceSummary, EnrollRequest, OfflineCopyHeld, OfflineCopyReport, UserInfo,
};
use ed25519_dalek::VerifyingKey;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::audit::server_chain::{self, ServerEvent, security_event};
use crate::error::ServerError;
use crate::scope::{ClinicScope, Principal};
use crate::secrets::random::{hash_secret, normalize_code};
use crate::state::AppState;
use crate::store::sql::Statement;
use crate::store::{self, Escrow, Store, offline_copies};
use crate::time::rfc3339;

/// Longest app version kept.
const MAX_APP_VERSION: usize = 40;

/// The app version a login reports, if it is short printable ASCII.
pub fn valid_app_version(version: &str) -> Result<&str, ServerError> {
    if version.is_empty()
        || version.len() > MAX_APP_VERSION
        || !version.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ServerError::BadRequest {
            field: "app_version",
        });
    }
    Ok(version)
}

/// The device talked to the server now (a sign-in), with its app version when it said.
pub async fn seen(
    store: &Store,
    device_id: Uuid,
    now_ms: i64,
    app_version: Option<&str>,
) -> Result<(), ServerError> {
    store.device_seen(device_id, now_ms, app_version).await
}

/// The write of [`seen`], for a transaction that writes anyway (an audit upload's): a
/// write of its own would queue for the store's one writer a second time.
pub(crate) fn seen_statement(device_id: Uuid, now_ms: i64, app_version: Option<&str>) -> Statement {
    store::devices::seen_statement(device_id, now_ms, app_version)
}

/// Most patients one user's copy may say it holds: more than any clinic has, so a number
/// past it is a broken client, not a big clinic.
const MAX_REPORTED: u64 = 10_000_000;

/// Keeps what the session's user says their offline copy on the session's workstation
/// holds (counts only), replacing what they said before. Nothing held (the app signs the
/// user out, which removes the copy; a lock keeps it) removes them from the count.
pub async fn report_offline_copy(
    store: &Store,
    scope: &ClinicScope,
    principal: &Principal,
    report: OfflineCopyReport,
    now_ms: i64,
) -> Result<(), ServerError> {
    let bounded = |n: u64, field| {
        i64::try_from(n)
            .ok()
            .filter(|_| n <= MAX_REPORTED)
            .ok_or(ServerError::BadRequest { field })
    };
    let patients = bounded(report.patients, "patients")?;
    let days = bounded(report.days, "days")?;
    let (device, user) = (principal.device_id, principal.user.user_id);
    let mut tx = store.clinic_tx(scope).await?;
    if patients == 0 && days == 0 {
        offline_copies::forget(&mut tx, device, user).await?;
    } else {
        offline_copies::report(&mut tx, device, user, patients, days, now_ms).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The clinic's workstations, active first, then by name, each with what its users'
/// offline copies hold.
pub async fn list(store: &Store, scope: &ClinicScope) -> Result<Vec<DeviceSummary>, ServerError> {
    let time = |ms: Option<i64>| ms.map(rfc3339).transpose();
    let count = |n: i64| u64::try_from(n).map_err(|_| ServerError::Internal("stored count"));
    let copies: std::collections::HashMap<Uuid, offline_copies::Held> = {
        let mut tx = store.clinic_tx(scope).await?;
        let rows = offline_copies::by_workstation(&mut tx).await?;
        tx.commit().await?;
        rows.into_iter().collect()
    };
    store
        .workstations(scope)
        .await?
        .into_iter()
        .map(|w| {
            let offline_copy = match copies.get(&w.id) {
                Some(held) => Some(OfflineCopyHeld {
                    users: count(held.users)?,
                    patients: count(held.patients)?,
                    reported_at: rfc3339(held.reported_at_ms)?,
                }),
                None => None,
            };
            let contiguous = count(w.contiguous_seq)?;
            let max = count(w.max_seq)?;
            let stored_above = count(w.stored_above_contiguous)?;
            Ok(DeviceSummary {
                id: w.id,
                name: w.name,
                enrolled_at: rfc3339(w.enrolled_at_ms)?,
                enrolled_by: w.enrolled_by,
                last_seen_at: time(w.last_seen_at_ms)?,
                app_version: w.app_version,
                revoked_at: time(w.revoked_at_ms)?,
                audit_contiguous_seq: contiguous,
                audit_outstanding: max.saturating_sub(contiguous).saturating_sub(stored_above),
                offline_copy,
            })
        })
        .collect()
}

/// A workstation the registry took in, and its clinic.
#[derive(Debug)]
pub struct Enrolled {
    pub device_id: Uuid,
    pub clinic_id: Uuid,
    pub clinic_name: String,
}

/// Enrolls the workstation `req` describes: checks its name and keys, escrows its device
/// secret, and [`enroll`]s it under a fresh id. `seen` is the request; its event names the
/// new device as the one it came from.
pub async fn enroll_workstation(
    state: &AppState,
    req: &EnrollRequest,
    seen: RequestSeen,
) -> Result<Enrolled, ServerError> {
    let name = req.device_name.trim();
    if name.is_empty() || name.chars().count() > 80 {
        return Err(ServerError::BadRequest {
            field: "device_name",
        });
    }
    let key_bytes: [u8; 32] = from_hex(&req.public_key)
        .and_then(|b| b.try_into().ok())
        .ok_or(ServerError::BadRequest {
            field: "public_key",
        })?;
    // The key signs the device's audit events: it must be one the audit format's rule
    // accepts (a low-order key would let anyone sign "its" events).
    clinicdesk_protocol::signature::PublicKey::from_bytes(&key_bytes).ok_or(
        ServerError::BadRequest {
            field: "public_key",
        },
    )?;
    let device_secret: Zeroizing<[u8; 32]> = from_hex(req.device_secret.expose())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Zeroizing::new)
        .ok_or(ServerError::BadRequest {
            field: "device_secret",
        })?;
    let recovery_bytes: [u8; 32] = from_hex(&req.recovery_public_key)
        .and_then(|b| b.try_into().ok())
        .filter(|b| *b != key_bytes)
        .ok_or(ServerError::BadRequest {
            field: "recovery_public_key",
        })?;
    VerifyingKey::from_bytes(&recovery_bytes).map_err(|_| ServerError::BadRequest {
        field: "recovery_public_key",
    })?;
    let device_id = Uuid::now_v7();
    let escrow = escrow_of(state, device_id, &device_secret, &req.recovery_public_key)?;
    let code_hash = hash_secret(&normalize_code(req.enrollment_code.expose()));
    let request = RequestSeen {
        session_device_id: Some(device_id),
        ..seen
    };
    let clinic_id = enroll(
        state,
        &code_hash,
        device_id,
        name,
        &req.public_key.to_lowercase(),
        &escrow,
        request,
    )
    .await?;
    let clinic_name = state
        .store
        .clinic_name(clinic_id)
        .await?
        .ok_or(ServerError::Internal("clinic vanished"))?;
    tracing::info!(%device_id, %clinic_id, "device enrolled");
    Ok(Enrolled {
        device_id,
        clinic_id,
        clinic_name,
    })
}

/// The escrow a workstation leaves at enrollment: its device secret sealed (bound to the
/// device id) and its recovery key.
pub fn escrow_of(
    state: &AppState,
    device_id: Uuid,
    device_secret: &[u8; 32],
    recovery_public_key_hex: &str,
) -> Result<Escrow, ServerError> {
    Ok(Escrow {
        sealed_secret: state.escrow.seal(device_id, device_secret)?,
        recovery_public_key: recovery_public_key_hex.to_lowercase(),
    })
}

/// Redeems a one-time enrollment code for a workstation's key and records `device_enrolled`
/// on the clinic's server chain in the same transaction: no workstation without its event.
/// The event's actor is the admin who issued the code; a code from the operator's console
/// has no user, and its event names the nil id (see docs/audit-format.md).
pub async fn enroll(
    state: &AppState,
    code_hash: &str,
    device_id: Uuid,
    name: &str,
    public_key_hex: &str,
    escrow: &Escrow,
    request: RequestSeen,
) -> Result<Uuid, ServerError> {
    let now = state.clock.now_ms();
    // Before any scope: the code names the clinic.
    let mut tx = state.store.tx().await?;
    let redeemed = store::enrollment::redeem(&mut tx, code_hash, now)
        .await?
        .ok_or(ServerError::InvalidEnrollmentCode)?;
    let clinic_id = redeemed.clinic_id;
    // The code named the clinic: the escrow row below is behind its wall.
    state
        .store
        .enter_clinic(&mut tx, &ClinicScope::of_enrollment(&redeemed))
        .await?;
    store::devices::insert_workstation(
        &mut tx,
        clinic_id,
        device_id,
        name,
        public_key_hex,
        redeemed.issued_by,
        now,
    )
    .await?;
    store::devices::insert_escrow(&mut tx, clinic_id, device_id, escrow).await?;
    let (actor_user_id, actor_role) = match redeemed.issued_by {
        Some(admin) => (
            admin,
            state.store.user_role(admin).await?.unwrap_or(Role::Admin),
        ),
        None => (Uuid::nil(), Role::Admin),
    };
    let event = ServerEvent {
        actor_user_id,
        actor_role,
        action: AuditAction::DeviceEnrolled,
        resource_type: "Device".into(),
        resource_id: device_id.to_string(),
        patient_id: None,
        fields: Vec::new(),
        outcome: Outcome::Success,
        route: "enroll_device".into(),
        break_glass: None,
        request,
        change: None,
    };
    server_chain::record_in(
        &mut tx,
        state,
        &ClinicScope::of_enrollment(&redeemed),
        vec![event],
    )
    .await?;
    tx.commit().await?;
    Ok(clinic_id)
}

/// Revokes a workstation of the clinic with every session opened from it, and records
/// `device_revoked` by `admin`. Another clinic's device is not found, exactly as one that
/// does not exist.
pub async fn revoke(
    state: &AppState,
    scope: &ClinicScope,
    admin: &UserInfo,
    device_id: Uuid,
    seen: RequestSeen,
) -> Result<(), ServerError> {
    // The revocation and its event commit together: never a device revoked by nobody.
    let mut tx = state.store.clinic_tx(scope).await?;
    if !Store::revoke_device_in(&mut tx, device_id, state.clock.now_ms()).await? {
        return Err(ServerError::NotFound);
    }
    let event = security_event(
        admin,
        AuditAction::DeviceRevoked,
        "Device",
        device_id.to_string(),
        "revoke_device",
        seen,
    );
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    tracing::info!(by = %admin.user_id, "device revoked");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_versions_are_short_printable_ascii() {
        assert!(valid_app_version("0.1.0").is_ok());
        assert!(valid_app_version("").is_err());
        assert!(valid_app_version("0.1.0 beta").is_err());
        assert!(valid_app_version(&"9".repeat(41)).is_err());
        assert!(valid_app_version("0.1.0\n").is_err());
    }
}
