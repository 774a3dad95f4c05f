//! A signed-in user changes their own password. The server checks the current one, stores
//! the new one and ends every session and second-factor grant of the user; this workstation
//! then rewraps the user's cache key and their copy of the recovery key under the new
//! password (the cache itself is untouched) and locks, so the next unlock takes the new password, and online a second factor.

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::AppStatus;
use clinicdesk_protocol::wire::PasswordChange;

use super::Session;
use crate::core::Core;
use crate::error::AppError;

impl Core {
    /// Changes the signed-in user's password. Needs the server (an offline session answers
    /// `server_unreachable`); a wrong current password or a weak new one changes nothing and
    /// leaves the session as it was.
    pub async fn change_password(
        &self,
        current_password: &str,
        new_password: &str,
    ) -> Result<AppStatus, AppError> {
        if current_password.is_empty() {
            return Err(AppError::BadInput("current_password"));
        }
        if new_password.is_empty() {
            return Err(AppError::BadInput("new_password"));
        }
        let (token, _) = self.session_snapshot()?;
        let token = token.ok_or(AppError::Unreachable)?;
        let user = match &self.session.lock().session {
            Session::Unlocked(u) => u.user.clone(),
            Session::Locked(_) => return Err(AppError::Locked),
            Session::SignedOut => return Err(AppError::SignedOut),
        };
        // The copy on this workstation must open with the current password, or nothing
        // changes anywhere (the server would otherwise hold a password the cache does not).
        let cache_key = self.device.with_device_secret(|secret| {
            self.device
                .users()
                .unwrap_key(secret, user.user_id, current_password)
        })?;
        let (_, client) = self.device.enrolled()?;
        let changed = client
            .change_password(
                &token,
                &PasswordChange {
                    current_password: current_password.into(),
                    new_password: new_password.into(),
                },
            )
            .await;
        self.device.note_network(&changed);
        if let Err(e) = changed {
            return Err(match &e {
                AppError::Server(api)
                    if matches!(
                        api.code,
                        ErrorCode::InvalidCredentials | ErrorCode::WeakPassword
                    ) =>
                {
                    e
                }
                _ => self.on_server_error(e).await,
            });
        }
        let rewrapped = self.device.with_device_secret(|secret| {
            self.device
                .users()
                .rewrap_key(secret, &user, new_password, &cache_key)?;
            self.store_recovery_copy(secret, user.user_id, new_password);
            Ok(())
        });
        if let Err(e) = rewrapped {
            // The server has the new password; the next online sign-in with it starts a
            // fresh copy (the cache is only a copy, the outbox is separate).
            tracing::error!(code = %e.to_api().code, "cache key not rewrapped after a password change");
        }
        tracing::info!("password changed; locking until the new one unlocks");
        // The server ended this session with all the others.
        Ok(self.lock_because("password_changed"))
    }
}
