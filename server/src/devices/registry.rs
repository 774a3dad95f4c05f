//! The clinic's workstations as its admins see them: who let each in, when it was last
//! seen and with which app, and how its audit trail stands.

use clinicdesk_protocol::wire::DeviceSummary;
use sqlx::Row;
use uuid::Uuid;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::sql::{Statement, Value};
use crate::store::{Store, parse_uuid};
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
    seen_statement(device_id, now_ms, app_version)
        .query()
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The statement of [`seen`], for a transaction that writes anyway (an audit upload's):
/// a write of its own would queue for the store's one writer a second time.
pub(crate) fn seen_statement(device_id: Uuid, now_ms: i64, app_version: Option<&str>) -> Statement {
    let mut st = Statement::new("UPDATE devices SET last_seen_at_ms = ");
    st.bind(now_ms)
        .push(", app_version = coalesce(")
        .bind(Value::OptText(app_version.map(str::to_owned)))
        .push(", app_version) WHERE id = ")
        .bind(device_id.to_string());
    st
}

/// The clinic's workstations, active first, then by name.
pub async fn list(store: &Store, scope: &ClinicScope) -> Result<Vec<DeviceSummary>, ServerError> {
    let rows = sqlx::query(
        "SELECT d.id, d.name, d.enrolled_at_ms, u.display_name, d.last_seen_at_ms,
                d.app_version, d.revoked_at_ms, coalesce(h.contiguous_seq, 0),
                coalesce(h.max_seq, 0),
                (SELECT COUNT(*) FROM audit_events e
                 WHERE e.device_id = d.id AND e.device_seq > coalesce(h.contiguous_seq, 0))
         FROM devices d
         LEFT JOIN users u ON u.id = d.enrolled_by AND u.clinic_id = d.clinic_id
         LEFT JOIN audit_device_heads h ON h.device_id = d.id
         WHERE d.clinic_id = $1 AND d.kind = 'workstation'
         ORDER BY d.revoked_at_ms IS NOT NULL, d.name, d.enrolled_at_ms",
    )
    .bind(scope.clinic_id().to_string())
    .fetch_all(store.pool())
    .await?;
    let time = |ms: Option<i64>| ms.map(rfc3339).transpose();
    let count = |n: i64| u64::try_from(n).map_err(|_| ServerError::Internal("stored count"));
    rows.iter()
        .map(|r| {
            let contiguous = count(r.get(7))?;
            let max = count(r.get(8))?;
            let stored_above = count(r.get(9))?;
            Ok(DeviceSummary {
                id: parse_uuid(r.get(0))?,
                name: r.get(1),
                enrolled_at: rfc3339(r.get(2))?,
                enrolled_by: r.get(3),
                last_seen_at: time(r.get(4))?,
                app_version: r.get(5),
                revoked_at: time(r.get(6))?,
                audit_contiguous_seq: contiguous,
                audit_outstanding: max.saturating_sub(contiguous).saturating_sub(stored_above),
            })
        })
        .collect()
}

/// Redeems a one-time enrollment code for a workstation's key and records `device_enrolled`
/// on the clinic's server chain in the same transaction: no workstation without its event.
/// The event's actor is the admin who issued the code; a code from the operator's console
/// has no user, and its event names the nil id (see docs/audit-format.md).
/// The escrow a workstation leaves at enrollment: its device secret sealed (bound to the
/// device id) and its recovery key.
pub fn escrow_of(
    state: &crate::AppState,
    device_id: Uuid,
    device_secret: &[u8; 32],
    recovery_public_key_hex: &str,
) -> Result<crate::store::Escrow, ServerError> {
    Ok(crate::store::Escrow {
        sealed_secret: state.escrow.seal(device_id, device_secret)?,
        recovery_public_key: recovery_public_key_hex.to_lowercase(),
    })
}

pub async fn enroll(
    state: &crate::AppState,
    code_hash: &str,
    device_id: Uuid,
    name: &str,
    public_key_hex: &str,
    escrow: &crate::store::Escrow,
    request: clinicdesk_protocol::audit::RequestSeen,
) -> Result<Uuid, ServerError> {
    use clinicdesk_protocol::audit::{AuditAction, Outcome};
    use clinicdesk_protocol::policy::Role;

    let now = state.clock.now_ms();
    let mut tx = state.store.pool().begin().await?;
    let redeemed = Store::enroll_device(
        &mut tx,
        code_hash,
        device_id,
        name,
        public_key_hex,
        escrow,
        now,
    )
    .await?
    .ok_or(ServerError::InvalidEnrollmentCode)?;
    let clinic_id = redeemed.clinic_id;
    let (actor_user_id, actor_role) = match redeemed.issued_by {
        Some(admin) => (
            admin,
            state.store.user_role(admin).await?.unwrap_or(Role::Admin),
        ),
        None => (Uuid::nil(), Role::Admin),
    };
    let event = crate::audit::server_chain::ServerEvent {
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
    };
    crate::audit::server_chain::record_in(
        &mut tx,
        state,
        &ClinicScope::of_enrollment(&redeemed),
        vec![event],
    )
    .await?;
    tx.commit().await?;
    Ok(clinic_id)
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
