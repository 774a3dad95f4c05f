//! Getting the device secret back after the OS keychain lost it (a reset keyring, a new
//! OS profile): the user's password opens their copy of the workstation's recovery key
//! ([`crate::secrets::recovery_key`]), the workstation proves itself with it, the user proves their
//! password and a fresh second factor to the server, and the server releases the copy of
//! the secret it sealed at enrollment, to this device only, and records that it did. The
//! device key, the outbox and every user's cache then open again, so no unsent audit event
//! is lost. A keychain that is merely locked is never "recovered": only a missing entry is
//! replaced.

use std::sync::Arc;

use clinicdesk_protocol::audit::from_hex;
use clinicdesk_protocol::mfa::LoginStep;
use clinicdesk_protocol::wire::{EscrowRelease, LoginResponse, escrow_proof_bytes};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::Session;
use super::second_factor::Stage;
use super::sign_in::{LoginProof, Opening};
use crate::core::Core;
use crate::error::AppError;
use crate::secrets::keychain::KeychainError;
use crate::secrets::recovery_key::{self, Found, RecoveryKey};

impl Core {
    /// Starts a recovery sign-in: the password and the recovery key's proof now, a fresh
    /// second factor next (the usual screens), and then the escrowed secret comes back.
    pub async fn recover_device_secret(
        &self,
        username: &str,
        password: &str,
    ) -> Result<clinicdesk_protocol::app::AppStatus, AppError> {
        let username = username.trim();
        if username.is_empty() {
            return Err(AppError::BadInput("username"));
        }
        if password.is_empty() {
            return Err(AppError::BadInput("password"));
        }
        if !matches!(self.session.lock().session, Session::SignedOut) {
            return Err(AppError::BadInput("session"));
        }
        self.device.enrolled()?;
        match self.device.with_device_secret(|_| Ok(())) {
            Err(AppError::Keychain(KeychainError::Missing)) => {}
            // The secret is there (nothing to recover) or the keychain is locked (unlock
            // it; replacing a secret that still exists would orphan every cache).
            Ok(()) => return Err(AppError::BadInput("session")),
            Err(e) => return Err(e),
        }
        // Only someone who signed in here before has a copy their password opens; nothing
        // goes to the server until one does.
        let recovery = match recovery_key::open_user_copy(
            &self.device.users().recovery_copies()?,
            password,
        )? {
            Found::Opened(key) => key,
            Found::NoCopies => return Err(AppError::Config("recovery-key.json")),
            Found::NoneOpened => return Err(AppError::BadInput("recovery_password")),
        };
        let login = self
            .server_login(username, password, LoginProof::Recovery(&recovery), None)
            .await;
        let (ticket, stage) = match self.answered(login).await? {
            LoginStep::SecondFactor(ticket) => (ticket, Stage::Verify),
            LoginStep::SetUpSecondFactor(ticket) => (ticket, Stage::SetUp),
            LoginStep::ChooseNewPassword(ticket) => (ticket, Stage::ChoosePassword),
            LoginStep::SignedIn(_) => {
                return Err(AppError::Internal(
                    "a recovery sign-in skipped the second factor",
                ));
            }
        };
        tracing::info!("recovery sign-in: password and recovery key accepted");
        self.await_second_factor(
            username,
            password,
            Opening::Recovery,
            ticket,
            stage,
            Some(Arc::from(recovery)),
        )
    }

    /// After the recovery sign-in's second factor: asks for the escrowed secret, checks it
    /// opens this device's key, and puts it back into the keychain.
    pub(super) async fn restore_device_secret(
        &self,
        login: &LoginResponse,
        recovery: &RecoveryKey,
    ) -> Result<(), AppError> {
        let (enrollment, client) = self.device.enrolled()?;
        let token = SecretString::from(login.session_token.expose());
        let challenge = client.challenge(enrollment.device_id).await;
        self.device.note_network(&challenge);
        let nonce = self.answered(challenge).await?.nonce;
        let recovery_signature =
            recovery.sign_hex(&escrow_proof_bytes(&nonce, enrollment.device_id));
        let released = client
            .release_escrow(
                &token,
                &EscrowRelease {
                    nonce,
                    recovery_signature,
                },
            )
            .await;
        self.device.note_network(&released);
        let released = self.answered(released).await?;
        let bytes = Zeroizing::new(
            from_hex(released.device_secret.expose())
                .ok_or(AppError::Internal("escrowed secret malformed"))?,
        );
        self.device.restore_secret(&bytes)?;
        tracing::warn!("device secret restored from the server's escrow");
        Ok(())
    }
}
