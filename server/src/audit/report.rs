//! The patient access report: every event naming one patient in a period, newest first (by
//! the event's time, or by when the server received it), with the actor's and device's
//! names, both times, and each event's inclusion proof against a freshly signed checkpoint.

use clinicdesk_protocol::export::{ExportFilters, PatientAccess, PatientAccessReport, ReportOrder};
use uuid::Uuid;

use super::export::{Records, fresh_checkpoint};
use super::log;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;

/// Most accesses one report lists; a longer history needs a narrower period (or an export).
pub const MAX_ACCESSES: usize = 10_000;

pub async fn patient_access_report(
    state: &AppState,
    scope: &ClinicScope,
    patient_id: Uuid,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    order: ReportOrder,
) -> Result<PatientAccessReport, ServerError> {
    // Another clinic's patient answers exactly like one that does not exist.
    if !state.store.is_clinic_patient(scope, patient_id).await? {
        return Err(ServerError::NotFound);
    }
    let checkpoint = fresh_checkpoint(state, scope).await?;
    let users = state.store.user_names(scope).await?;
    let devices = state.store.device_names(scope).await?;
    let filters = ExportFilters {
        patient_id: Some(patient_id),
        from_ms,
        to_ms,
        ..ExportFilters::default()
    };
    let mut records = Records::new(state, scope, &filters, &checkpoint);
    let mut accesses = Vec::new();
    // The proofs are read as one snapshot of the log.
    let mut proofs = state.store.clinic_tx(scope).await?;
    while let Some(page) = records.next_page().await? {
        for r in page {
            if accesses.len() == MAX_ACCESSES {
                return Err(ServerError::BadRequest { field: "from_ms" });
            }
            let proof = log::inclusion(
                &mut proofs,
                scope.clinic_id(),
                r.leaf_index,
                checkpoint.checkpoint.tree_size,
            )
            .await?;
            accesses.push(PatientAccess {
                actor_name: users.get(&r.event.actor_user_id).cloned(),
                device_name: devices.get(&r.event.device_id).cloned(),
                event: r.event,
                signature: r.signature,
                leaf_index: r.leaf_index,
                inclusion: proof.hashes,
                received_at_ms: Some(r.received_at_ms),
            });
        }
    }
    proofs.commit().await?;
    if order == ReportOrder::Received {
        // Stable: events received together keep their order by time.
        accesses.sort_by_key(|a| std::cmp::Reverse(a.received_at_ms));
    }
    Ok(PatientAccessReport {
        clinic_id: scope.clinic_id(),
        patient_id,
        from_ms,
        to_ms,
        generated_at_ms: state.clock.now_ms(),
        checkpoint,
        order,
        accesses,
    })
}
