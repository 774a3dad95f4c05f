//! Care teams: the clinicians who read a patient's clinical summary without break-glass.
//! The front desk puts clinicians on a patient's team and takes them off (registration
//! work); every change is a server event about the patient, recorded in the change's own
//! transaction, so it shows in the patient's access report. Clinicians cannot change
//! teams, so none can reach a chart outside their panel except through break-glass.

use clinicdesk_protocol::audit::{AuditAction, Outcome, RequestSeen};
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{CareTeam, StaffMember, UserInfo};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::audit::access::{Disclosed, Discloses};
use crate::audit::server_chain::{self, ServerEvent};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::{Store, parse_uuid};

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

/// Whether the patient is one of the scope's clinic's (`NotFound` otherwise, exactly as a
/// patient that does not exist).
async fn require_patient(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    patient_id: Uuid,
) -> Result<(), ServerError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM patients WHERE id = $1 AND clinic_id = $2")
            .bind(patient_id.to_string())
            .bind(scope.clinic_id().to_string())
            .fetch_optional(&mut *conn)
            .await?;
    found.map(|_| ()).ok_or(ServerError::NotFound)
}

/// The patient's team and the clinic's other active clinicians.
pub async fn team(
    store: &Store,
    scope: &ClinicScope,
    patient_id: Uuid,
) -> Result<CareTeam, ServerError> {
    let mut tx = store.clinic_tx(scope).await?;
    require_patient(&mut tx, scope, patient_id).await?;
    let rows = sqlx::query(
        "SELECT u.id, u.display_name,
                EXISTS (SELECT 1 FROM care_team t WHERE t.clinic_id = u.clinic_id
                        AND t.clinician_id = u.id AND t.patient_id = $2)
         FROM users u WHERE u.clinic_id = $1 AND u.role = $3 AND u.active = 1
         ORDER BY u.display_name, u.id",
    )
    .bind(scope.clinic_id().to_string())
    .bind(patient_id.to_string())
    .bind(Role::Clinician.as_str())
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let (mut members, mut others) = (Vec::new(), Vec::new());
    for row in rows {
        let member = StaffMember {
            user_id: parse_uuid(row.get(0))?,
            display_name: row.get(1),
        };
        if crate::store::flag(&row, 2)? {
            members.push(member);
        } else {
            others.push(member);
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
    require_patient(&mut tx, scope, patient_id).await?;
    let clinician: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM users WHERE id = $1 AND clinic_id = $2 AND role = $3 AND active = 1",
    )
    .bind(clinician_id.to_string())
    .bind(scope.clinic_id().to_string())
    .bind(Role::Clinician.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    if clinician.is_none() {
        return Err(ServerError::BadRequest {
            field: "clinician_id",
        });
    }
    if insert_member(&mut tx, scope, clinician_id, patient_id).await? {
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
    require_patient(&mut tx, scope, patient_id).await?;
    let removed = sqlx::query(
        "DELETE FROM care_team WHERE clinic_id = $1 AND clinician_id = $2 AND patient_id = $3",
    )
    .bind(scope.clinic_id().to_string())
    .bind(clinician_id.to_string())
    .bind(patient_id.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if removed == 0 {
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
    insert_member(&mut tx, scope, clinician_id, patient_id).await?;
    tx.commit().await?;
    Ok(())
}

/// Adds the membership; answers whether it is new.
async fn insert_member(
    conn: &mut AnyConnection,
    scope: &ClinicScope,
    clinician_id: Uuid,
    patient_id: Uuid,
) -> Result<bool, ServerError> {
    let added = sqlx::query(
        "INSERT INTO care_team (clinic_id, clinician_id, patient_id) VALUES ($1, $2, $3)
         ON CONFLICT (clinician_id, patient_id) DO NOTHING",
    )
    .bind(scope.clinic_id().to_string())
    .bind(clinician_id.to_string())
    .bind(patient_id.to_string())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(added > 0)
}
