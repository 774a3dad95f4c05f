//! What an admin does from the app: list the clinic's workstations, issue enrollment codes
//! and revoke workstations. No PHI passes here, so nothing goes to the outbox; the server
//! records revocations on its own chain. Admin work needs the server: offline it answers
//! `server_unreachable`.

use clinicdesk_protocol::wire::{DeviceList, EnrollmentCodeIssued};
use uuid::Uuid;

use super::Core;
use crate::error::AppError;

impl Core {
    pub async fn devices(&self) -> Result<DeviceList, AppError> {
        let (token, _) = self.session_snapshot()?;
        self.fetch(token, |client, token| async move {
            client.devices(&token).await
        })
        .await
        .map_err(|e| self.on_server_error(e))
    }

    pub async fn issue_enrollment_code(&self) -> Result<EnrollmentCodeIssued, AppError> {
        let (token, _) = self.session_snapshot()?;
        self.fetch(token, |client, token| async move {
            client.issue_enrollment_code(&token).await
        })
        .await
        .map_err(|e| self.on_server_error(e))
    }

    pub async fn revoke_device(&self, device_id: Uuid) -> Result<(), AppError> {
        let (token, _) = self.session_snapshot()?;
        self.fetch(token, |client, token| async move {
            client.revoke_device(&token, device_id).await
        })
        .await
        .map_err(|e| self.on_server_error(e))
    }
}
