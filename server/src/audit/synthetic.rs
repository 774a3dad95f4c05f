//! Synthetic audit trails for tests, the demo and benchmarks: a few enrolled synthetic
//! workstations sign chained `view` events by the clinic's users about its synthetic
//! patients, and every batch goes through the real ingest (signatures, chains, log,
//! checkpoints, the claims checked against the sign-ins). The workstations are given a past
//! (enrolled a month ago, each user signed in on them then). No real person's data is
//! involved.

use clinicdesk_protocol::audit::{
    AuditAction, AuditEvent, Hash32, Outcome, RequestSeen, SignedAuditEvent, to_hex,
};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::AuditUpload;
use ed25519_dalek::{Signer, SigningKey};
use uuid::Uuid;

use super::ingest::{MAX_BATCH, ingest};
use crate::admin::seed::issue_enrollment_code;
use crate::error::ServerError;
use crate::secrets::random::{bytes, hash_secret, normalize_code};
use crate::state::AppState;

/// How far back the synthetic trail reaches.
const WINDOW_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// Workstations that share the synthetic trail.
pub const DEVICES: usize = 4;

struct Workstation {
    key: SigningKey,
    id: Uuid,
    seq: u64,
    tip: Hash32,
}

/// Appends `n` synthetic events to the clinic's trail over the last 30 days, calling
/// `progress` with the running total after each batch. Returns how many were stored.
pub async fn seed_audit_events(
    state: &AppState,
    clinic: Uuid,
    n: u64,
    mut progress: impl FnMut(u64),
) -> Result<u64, ServerError> {
    let scope = crate::scope::ClinicScope::of_console(&crate::scope::Console::operator(), clinic);
    let users: Vec<(Uuid, Role)> = state
        .store
        .users_and_roles(&scope)
        .await?
        .into_iter()
        .filter(|(_, role)| *role != Role::Admin)
        .collect();
    let patients = state.store.patient_ids(&scope).await?;
    if users.is_empty() || patients.is_empty() {
        return Err(ServerError::BadRequest { field: "clinic" });
    }
    let now = state.clock.now_ms();
    let seeder = RequestSeen {
        client_ip: "127.0.0.1".into(),
        user_agent: "clinicdesk-server seed".into(),
        session_device_id: None,
    };
    let mut stations = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let code =
            issue_enrollment_code(&state.store, state.clock.as_ref(), clinic, 15, None).await?;
        let key = SigningKey::from_bytes(&bytes::<32>()?);
        let recovery = SigningKey::from_bytes(&bytes::<32>()?);
        let id = Uuid::now_v7();
        let escrow = crate::devices::registry::escrow_of(
            state,
            id,
            &bytes::<32>()?,
            &to_hex(recovery.verifying_key().as_bytes()),
        )?;
        crate::devices::registry::enroll(
            state,
            &hash_secret(&normalize_code(&code)),
            id,
            &format!("Synthetic workstation {}", i + 1),
            &to_hex(key.verifying_key().as_bytes()),
            &escrow,
            RequestSeen {
                session_device_id: Some(id),
                ..seeder.clone()
            },
        )
        .await?;
        state
            .store
            .backdate_synthetic_workstation(&scope, id, &users, now - WINDOW_MS)
            .await?;
        stations.push(Workstation {
            key,
            id,
            seq: 0,
            tip: Hash32::GENESIS,
        });
    }
    let step = (WINDOW_MS / i64::try_from(n.max(1)).unwrap_or(i64::MAX)).max(1);
    let mut done = 0u64;
    while done < n {
        let station =
            &mut stations[usize::try_from(done / MAX_BATCH as u64).unwrap_or(0) % DEVICES];
        let size = (n - done).min(MAX_BATCH as u64);
        let mut events = Vec::with_capacity(usize::try_from(size).unwrap_or(MAX_BATCH));
        for k in 0..size {
            let i = done + k;
            let (user, role) = users[usize::try_from(i).unwrap_or(0) % users.len()];
            let patient = patients[usize::try_from(i / 3).unwrap_or(0) % patients.len()];
            station.seq += 1;
            let event = AuditEvent {
                id: Uuid::now_v7(),
                clinic_id: clinic,
                actor_user_id: user,
                actor_role: role,
                recorded_by: clinicdesk_protocol::audit::Recorder::Device,
                device_id: station.id,
                device_seq: station.seq,
                action: AuditAction::View,
                resource_type: "Patient".into(),
                resource_id: patient.to_string(),
                patient_id: Some(patient),
                fields: fields_read_by(role),
                outcome: Outcome::Success,
                occurred_at_ms: now - WINDOW_MS + i64::try_from(i).unwrap_or(0) * step,
                offline: i.is_multiple_of(17),
                route: "patient".into(),
                break_glass: None,
                request: None,
                prev_hash: station.tip,
                change: None,
            };
            station.tip = event.hash();
            events.push(SignedAuditEvent {
                signature: to_hex(&station.key.sign(&event.canonical_bytes()).to_bytes()),
                event,
            });
        }
        let receipt = ingest(
            state,
            &AuditUpload {
                device_id: station.id,
                events,
                held_receipt: None,
            },
            &seeder,
        )
        .await?;
        if receipt.highest_contiguous_seq != station.seq {
            return Err(ServerError::Internal("synthetic batch not stored whole"));
        }
        done += size;
        progress(done);
    }
    Ok(done)
}

/// The patient fields a role reads, as the app records them.
fn fields_read_by(role: Role) -> Vec<String> {
    let mut fields = vec!["name", "birth_date", "mrn", "phone"];
    if clinicdesk_protocol::policy::allows(role, clinicdesk_protocol::Permission::ReadClinical) {
        fields.extend(["allergies", "problems", "medications"]);
    }
    fields.into_iter().map(str::to_owned).collect()
}
