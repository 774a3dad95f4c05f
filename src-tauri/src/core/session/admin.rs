//! What an admin does from the app: the clinic's workstations (list, enrollment codes,
//! revocation, the audit trail's tamper alerts), users (list, create, change role, deactivate, reset second factors), the
//! import of the clinic's records from its old system (a FHIR export), the directory of
//! its practitioners linked to the clinicians' accounts, and the
//! access review (saved as CSV: who can reach patient data, not the data itself).
//! No PHI passes here, so nothing goes to the outbox; the server records each change on
//! its own chain. Admin work needs the server: offline it answers `server_unreachable`.

use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{
    AuditAlerts, DeviceList, DirectoryLink, EnrollmentCodeIssued, ImportJob, NewUser,
    PractitionerDirectory, RecordWritten, UserList, UserSummary,
};
use uuid::Uuid;

use crate::core::Core;
use crate::error::AppError;
use crate::net::client::UserChange;

impl Core {
    pub async fn devices(&self) -> Result<DeviceList, AppError> {
        self.online_call(|c, t| async move { c.devices(&t).await })
            .await
    }

    /// What the server holds against the clinic's audit chains: tamper alerts (a different
    /// event at a stored position, a broken link) and sequences still missing.
    pub async fn audit_alerts(&self) -> Result<AuditAlerts, AppError> {
        self.online_call(|c, t| async move { c.audit_alerts(&t).await })
            .await
    }

    /// Starts importing the clinic's patients from `ndjson` (the `Patient` lines of a FHIR
    /// R4 export, one part of at most the server's body limit). The server records each
    /// record's `create` event; the job names source ids only, so nothing here is PHI read.
    pub async fn start_import(&self, ndjson: String) -> Result<ImportJob, AppError> {
        self.online_call(|c, t| async move { c.start_import(&t, ndjson).await })
            .await
    }

    /// An import job as it goes.
    pub async fn import_job(&self, id: Uuid) -> Result<ImportJob, AppError> {
        self.online_call(|c, t| async move { c.import_job(&t, id).await })
            .await
    }

    /// The old system's practitioners (workforce, not patients) and their linked accounts.
    pub async fn practitioner_directory(&self) -> Result<PractitionerDirectory, AppError> {
        self.online_call(|c, t| async move { c.practitioner_directory(&t).await })
            .await
    }

    /// Links a directory entry to a clinician's account (or unlinks it), if it is still at
    /// `based_on`; the server records the change with its event.
    pub async fn link_practitioner(
        &self,
        entry: Uuid,
        based_on: u64,
        user_id: Option<Uuid>,
    ) -> Result<RecordWritten, AppError> {
        let link = DirectoryLink { user_id };
        self.online_call(|c, t| {
            let link = link.clone();
            async move { c.link_practitioner(&t, entry, based_on, &link).await }
        })
        .await
    }

    pub async fn issue_enrollment_code(&self) -> Result<EnrollmentCodeIssued, AppError> {
        self.online_call(|c, t| async move { c.issue_enrollment_code(&t).await })
            .await
    }

    pub async fn revoke_device(&self, device_id: Uuid) -> Result<(), AppError> {
        self.online_call(|c, t| async move { c.revoke_device(&t, device_id).await })
            .await
    }

    pub async fn clinic_users(&self) -> Result<UserList, AppError> {
        self.online_call(|c, t| async move { c.users(&t).await })
            .await
    }

    pub async fn create_user(&self, new: NewUser) -> Result<UserSummary, AppError> {
        self.online_call(|c, t| async move { c.create_user(&t, &new).await })
            .await
    }

    pub async fn change_role(&self, user_id: Uuid, role: Role) -> Result<(), AppError> {
        self.online_call(
            |c, t| async move { c.change_user(&t, user_id, UserChange::Role(role)).await },
        )
        .await
    }

    pub async fn deactivate_user(&self, user_id: Uuid) -> Result<(), AppError> {
        self.online_call(
            |c, t| async move { c.change_user(&t, user_id, UserChange::Deactivate).await },
        )
        .await
    }

    pub async fn reset_second_factor(&self, user_id: Uuid) -> Result<(), AppError> {
        self.online_call(
            |c, t| async move { c.change_user(&t, user_id, UserChange::ResetMfa).await },
        )
        .await
    }

    /// Saves the clinic's access review as CSV in `dir` (created if missing), readable by
    /// this OS user only, and returns the file's path.
    pub async fn export_access_review(
        &self,
        dir: &std::path::Path,
    ) -> Result<std::path::PathBuf, AppError> {
        let csv = self
            .online_call(|c, t| async move { c.access_review_csv(&t).await })
            .await?;
        let date = crate::os::clock::rfc3339(self.clock.now_ms());
        let day = date.get(..10).unwrap_or("today");
        let path = dir.join(format!("clinicdesk-access-review-{day}.csv"));
        write_private(dir, &path, &csv)
            .map_err(|_| AppError::Internal("saving the access review"))?;
        Ok(path)
    }
}

fn write_private(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
