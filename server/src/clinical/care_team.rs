//! Care teams: the clinicians who read a patient's clinical summary without break-glass.
//! The front desk puts clinicians on a patient's team and takes them off (registration
//! work); every change is a server event about the patient, recorded in the change's own
//! transaction, so it shows in the patient's access report. Clinicians cannot change
//! teams, so none can reach a chart outside their panel except through break-glass.

use clinicdesk_protocol::audit::{AuditAction, Outcome, RequestSeen};
use clinicdesk_protocol::wire::{CareTeam, UserInfo};
use uuid::Uuid;

use crate::audit::access::{Disclosed, Discloses};
use crate::audit::server_chain::{self, ServerEvent};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::{self, ClinicTx, Store};

/// The routes that change a team, as their events name them.
const ADD_ROUTE: &str = "/v1/patients/{patient_id}/care-team";
const REMOVE_ROUTE: &str = "/v1/patients/{patient_id}/care-team/{user_id}/remove";

impl Discloses for CareTeam {
    fn disclosed(&self) -> Vec<Disclosed> {
        vec![Disclosed {
            resource_id: self.patient_id.to_string(),
            patient_id: Some(self.patient_id),
            fields: vec!["members".to_owned()],
        }]
    }
}

/// Whether the patient is one of the transaction's clinic's (`NotFound` otherwise, exactly
/// as a patient that does not exist).
async fn require_patient(tx: &mut ClinicTx, patient_id: Uuid) -> Result<(), ServerError> {
    if store::patients::patient_exists(tx, patient_id).await? {
        Ok(())
    } else {
        Err(ServerError::NotFound)
    }
}

/// The patient's team and the clinic's other active clinicians.
pub async fn team(
    store: &Store,
    scope: &ClinicScope,
    patient_id: Uuid,
) -> Result<CareTeam, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    require_patient(&mut tx, patient_id).await?;
    let candidates = store::care_team::candidates(&mut tx, patient_id).await?;
    tx.commit().await?;
    let (mut members, mut others) = (Vec::new(), Vec::new());
    for candidate in candidates {
        if candidate.on_team {
            members.push(candidate.member);
        } else {
            others.push(candidate.member);
        }
    }
    Ok(CareTeam {
        patient_id,
        members,
        others,
    })
}

/// Puts `clinician_id` on the patient's team; already there is fine (no second event). A
/// user who is not an active clinician of the clinic is refused by name of the field.
pub async fn add(
    state: &AppState,
    scope: &ClinicScope,
    by: &UserInfo,
    patient_id: Uuid,
    clinician_id: Uuid,
    seen: RequestSeen,
) -> Result<(), ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    require_patient(&mut tx, patient_id).await?;
    if !store::care_team::is_active_clinician(&mut tx, clinician_id).await? {
        return Err(ServerError::BadRequest {
            field: "clinician_id",
        });
    }
    if store::care_team::add_member(&mut tx, clinician_id, patient_id).await? {
        let event = change_event(
            by,
            AuditAction::Create,
            patient_id,
            clinician_id,
            ADD_ROUTE,
            seen,
        );
        server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Takes `clinician_id` off the patient's team (`NotFound` if they are not on it).
pub async fn remove(
    state: &AppState,
    scope: &ClinicScope,
    by: &UserInfo,
    patient_id: Uuid,
    clinician_id: Uuid,
    seen: RequestSeen,
) -> Result<(), ServerError> {
    let mut tx = state.store.clinic_tx(scope).await?;
    require_patient(&mut tx, patient_id).await?;
    if !store::care_team::remove_member(&mut tx, clinician_id, patient_id).await? {
        return Err(ServerError::NotFound);
    }
    let event = change_event(
        by,
        AuditAction::Delete,
        patient_id,
        clinician_id,
        REMOVE_ROUTE,
        seen,
    );
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    Ok(())
}

/// A change of the patient's care team: the member added or removed, by whom.
fn change_event(
    by: &UserInfo,
    action: AuditAction,
    patient_id: Uuid,
    clinician_id: Uuid,
    route: &str,
    seen: RequestSeen,
) -> ServerEvent {
    ServerEvent {
        actor_user_id: by.user_id,
        actor_role: by.role,
        action,
        resource_type: "CareTeam".to_owned(),
        resource_id: clinician_id.to_string(),
        patient_id: Some(patient_id),
        fields: vec!["members".to_owned()],
        outcome: Outcome::Success,
        route: route.to_owned(),
        break_glass: None,
        request: seen,
        change: None,
    }
}

/// Puts a patient on a clinician's care team (seeding, tests); already there is fine.
pub async fn assign(
    store: &Store,
    scope: &ClinicScope,
    clinician_id: Uuid,
    patient_id: Uuid,
) -> Result<(), ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    store::care_team::add_member(&mut tx, clinician_id, patient_id).await?;
    tx.commit().await?;
    Ok(())
}
