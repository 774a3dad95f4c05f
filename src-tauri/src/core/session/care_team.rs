//! Care teams from the app: the front desk sees who is on a patient's team and puts a
//! clinician on it or takes one off. Online only: the server checks the role, makes the
//! change and records it (and each look at a team) as an event about the patient. Nothing
//! of it is cached: it names no clinical content, and it changes under other desks.

use clinicdesk_protocol::wire::{CareTeam, CareTeamAddition};
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;

impl Core {
    pub async fn care_team(&self, patient_id: Uuid) -> Result<CareTeam, AppError> {
        self.online_call(|c, t| async move { c.care_team(&t, patient_id).await })
            .await
    }

    /// Puts the clinician on the patient's team; answers the team as it now is.
    pub async fn add_to_care_team(
        &self,
        patient_id: Uuid,
        clinician_id: Uuid,
    ) -> Result<CareTeam, AppError> {
        let addition = CareTeamAddition { clinician_id };
        self.online_call(|c, t| async move { c.add_to_care_team(&t, patient_id, &addition).await })
            .await?;
        self.care_team(patient_id).await
    }

    /// Takes the clinician off the patient's team; answers the team as it now is.
    pub async fn remove_from_care_team(
        &self,
        patient_id: Uuid,
        clinician_id: Uuid,
    ) -> Result<CareTeam, AppError> {
        self.online_call(|c, t| async move {
            c.remove_from_care_team(&t, patient_id, clinician_id).await
        })
        .await?;
        self.care_team(patient_id).await
    }
}
