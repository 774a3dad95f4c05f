//! The patient access report: every event naming one patient in a period, newest first,
//! with the actor's and device's names and each event's inclusion proof against a freshly
//! signed checkpoint.

use std::collections::HashMap;

use clinicdesk_protocol::export::{ExportFilters, PatientAccess, PatientAccessReport};
use sqlx::Row;
use uuid::Uuid;

use super::export::{Records, fresh_checkpoint};
use super::log;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;

/// Most accesses one report lists; a longer history needs a narrower period (or an export).
pub const MAX_ACCESSES: usize = 10_000;

async fn names(
    state: &AppState,
    scope: &ClinicScope,
    sql: &'static str,
) -> Result<HashMap<Uuid, String>, ServerError> {
    let rows = sqlx::query(sql)
        .bind(scope.clinic_id().to_string())
        .fetch_all(state.store.pool())
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((Uuid::parse_str(r.get::<&str, _>(0)).ok()?, r.get(1))))
        .collect())
}

pub async fn patient_access_report(
    state: &AppState,
    scope: &ClinicScope,
    patient_id: Uuid,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<PatientAccessReport, ServerError> {
    // Another clinic's patient answers exactly like one that does not exist.
    if !state.store.is_clinic_patient(scope, patient_id).await? {
        return Err(ServerError::NotFound);
    }
    let checkpoint = fresh_checkpoint(state, scope).await?;
    let users = names(
        state,
        scope,
        "SELECT id, display_name FROM users WHERE clinic_id = $1",
    )
    .await?;
    let devices = names(
        state,
        scope,
        "SELECT id, name FROM devices WHERE clinic_id = $1",
    )
    .await?;
    let filters = ExportFilters {
        patient_id: Some(patient_id),
        from_ms,
        to_ms,
        ..ExportFilters::default()
    };
    let mut records = Records::new(state, scope, &filters, &checkpoint);
    let mut accesses = Vec::new();
    let mut conn = state.store.pool().acquire().await?;
    while let Some(page) = records.next_page().await? {
        for r in page {
            if accesses.len() == MAX_ACCESSES {
                return Err(ServerError::BadRequest { field: "from_ms" });
            }
            let proof = log::inclusion(
                &mut conn,
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
            });
        }
    }
    Ok(PatientAccessReport {
        clinic_id: scope.clinic_id(),
        patient_id,
        from_ms,
        to_ms,
        generated_at_ms: state.clock.now_ms(),
        checkpoint,
        accesses,
    })
}
