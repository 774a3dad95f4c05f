//! Break-glass from the app: a clinician opens an hour's access to a chart outside their
//! care team (online only: the server grants it and records why), then reads it through
//! the usual path, whose outbox event carries the grant's reason. Admins list the grants
//! and acknowledge each with a note; no PHI content passes there, only ids and reasons.

use clinicdesk_protocol::phi::Phi;
use clinicdesk_protocol::wire::{
    BreakGlassQueue, BreakGlassReason, BreakGlassRequest, Patient, ReviewRequest,
};
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;

impl Core {
    /// Breaks the glass on one patient and returns the chart read under the new grant.
    pub async fn break_glass(
        &self,
        patient_id: Uuid,
        reason_code: BreakGlassReason,
        reason_text: String,
    ) -> Result<Patient, AppError> {
        let request = BreakGlassRequest {
            reason_code,
            reason_text: Phi::new(reason_text),
        };
        self.online_call(|c, t| async move { c.break_glass(&t, patient_id, &request).await })
            .await?;
        self.open_patient(patient_id).await
    }

    pub async fn break_glass_queue(&self, pending: bool) -> Result<BreakGlassQueue, AppError> {
        self.online_call(|c, t| async move { c.break_glass_queue(&t, pending).await })
            .await
    }

    pub async fn review_break_glass(&self, grant_id: Uuid, note: String) -> Result<(), AppError> {
        let request = ReviewRequest {
            note: Phi::new(note),
        };
        self.online_call(|c, t| async move { c.review_break_glass(&t, grant_id, &request).await })
            .await
    }
}
