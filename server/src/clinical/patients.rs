//! One patient's chart as its reader may see it: the clinical summary only for a clinician
//! of the patient's care team or under a live break-glass grant, which the answer names.

use clinicdesk_protocol::audit::BreakGlass;
use clinicdesk_protocol::wire::{Patient, UserInfo};
use uuid::Uuid;

use crate::clinical::break_glass::{self, ChartAccess};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::{self, ClinicTx, Store};

/// The patient's chart as `user` may read it now, and the break-glass flag its reads carry
/// (if read under a grant). Another clinic's patient is not found, exactly as one that does
/// not exist.
pub async fn chart(
    store: &Store,
    scope: &ClinicScope,
    user: &UserInfo,
    patient_id: Uuid,
    now_ms: i64,
) -> Result<(Patient, Option<BreakGlass>), ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    let access = break_glass::clinical_access(&mut tx, user, patient_id, now_ms).await?;
    let patient = store::patients::patient(&mut tx, patient_id, access.reads_clinical()).await?;
    tx.commit().await?;
    let mut patient = patient.ok_or(ServerError::NotFound)?;
    patient.clinical_access = access.wire();
    let grant = access.into_grant();
    let flag = grant.as_ref().map(break_glass::flag);
    patient.break_glass = grant;
    Ok((patient, flag))
}

/// The patient's chart as an offline copy keeps it: the clinical summary only for a
/// clinician of the care team. A live break-glass grant is not honoured here: it is for
/// one emergency read, flagged for review, and a copy on disk would outlive it. `None` if
/// the patient is not in the clinic. In the caller's transaction.
pub async fn offline_chart(
    tx: &mut ClinicTx,
    user: &UserInfo,
    patient_id: Uuid,
    now_ms: i64,
) -> Result<Option<Patient>, ServerError> {
    let access = match break_glass::clinical_access(tx, user, patient_id, now_ms).await? {
        ChartAccess::BreakGlass(_) => ChartAccess::OutsideCareTeam,
        access => access,
    };
    let patient = store::patients::patient(tx, patient_id, access.reads_clinical()).await?;
    Ok(patient.map(|mut p| {
        p.clinical_access = access.wire();
        p
    }))
}
