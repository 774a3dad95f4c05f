//! How the device part begins and ends: enrolling with a one-time code, taking back the
//! device secret from the server's escrow, and the wipe after a revocation.

use clinicdesk_protocol::app::Revocation;
use clinicdesk_protocol::wire::EnrollRequest;
use zeroize::Zeroizing;

use super::{Device, DeviceGuard, Enrolled, KeychainState, key_error};
use crate::config::Config;
use crate::error::AppError;
use crate::files::{remove_file, write_atomic, write_json};
use crate::local::db;
use crate::net::client::ServerClient;
use crate::net::enrollment::{Enrollment, save_enrollment};
use crate::secrets::device_key::DeviceKey;
use crate::secrets::keys::{DEVICE_SECRET, DeviceSecret};
use crate::secrets::recovery_key::RecoveryKey;

impl Device {
    /// Registers this workstation: a new device secret in the keychain, a device key wrapped
    /// under it and a recovery key; the public keys and an escrow copy of the secret go to
    /// the server with the one-time code, and the server's CA is pinned.
    pub(in crate::core) async fn enroll(
        &self,
        config: &Config,
        code: &str,
        device_name: &str,
    ) -> Result<(), AppError> {
        if self.is_enrolled() {
            return Err(AppError::AlreadyEnrolled);
        }
        let code = code.trim();
        if code.is_empty() {
            return Err(AppError::BadInput("enrollment_code"));
        }
        let device_name = device_name.trim();
        if device_name.is_empty() {
            return Err(AppError::BadInput("device_name"));
        }
        let ca_path = config
            .enrollment_ca
            .as_ref()
            .ok_or(AppError::Config("server_ca"))?;
        let ca = std::fs::read(ca_path).map_err(|e| AppError::Io("server CA file", e))?;
        let client = ServerClient::new(&config.server_url, &ca)?;
        // A fresh secret: nothing of an earlier enrollment on this install stays readable.
        let secret = DeviceSecret::create(&self.keychain).map_err(key_error)?;
        self.lock().keychain = KeychainState::Fine;
        let key = DeviceKey::create(&self.paths, &secret)?;
        let recovery = RecoveryKey::create(&self.paths, &secret)?;
        let result = client
            .enroll(&EnrollRequest {
                enrollment_code: code.into(),
                device_name: device_name.to_owned(),
                public_key: key.public_key_hex(),
                device_secret: secret.escrow_hex().as_str().into(),
                recovery_public_key: recovery.public_key_hex(),
            })
            .await;
        drop(secret);
        self.note_network(&result);
        let response = result?;
        self.lock().outbox = None;
        db::remove_files(&self.paths.outbox).map_err(|e| AppError::Io("outbox", e))?;
        self.users.remove_all()?;
        write_atomic(&self.paths.pinned_ca, &ca)?;
        let enrollment = Enrollment {
            device_id: response.device_id,
            clinic_id: response.clinic_id,
            clinic_name: response.clinic_name,
            server_url: config.server_url.clone(),
            device_name: device_name.to_owned(),
            audit_public_key: response.audit_public_key,
        };
        save_enrollment(&self.paths, &enrollment)?;
        remove_file(&self.paths.revoked, "revoked.json")?;
        tracing::info!(device_id = %enrollment.device_id, "enrolled");
        {
            let mut state = self.lock();
            state.revoked = None;
            state.enrolled = Some(Enrolled { enrollment, client });
        }
        self.ensure_outbox()
    }

    /// Puts the escrowed device secret the server released back into the keychain, once it
    /// proves to be this device's own (it opens the wrapped device key); then the outbox
    /// opens again. Anything else stays out of the keychain.
    pub(in crate::core) fn restore_secret(&self, escrowed: &[u8]) -> Result<(), AppError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        if escrowed.len() != 32 {
            return Err(AppError::Internal("escrowed secret malformed"));
        }
        secret.copy_from_slice(escrowed);
        DeviceKey::load(
            &self.paths,
            &DeviceSecret::from_bytes(Zeroizing::new(*secret)),
        )?;
        DeviceSecret::restore(&self.keychain, secret).map_err(key_error)?;
        self.lock().keychain = KeychainState::Fine;
        self.ensure_outbox()
    }
}

impl DeviceGuard<'_> {
    /// The server revoked this device (and it handed in what it could of its outbox, as
    /// `revocation` says). First the device secret is destroyed in the keychain (every cache
    /// and the outbox become unreadable at once), then the files are deleted; the device is
    /// then neither enrolled nor able to enroll without a new code.
    pub(in crate::core) fn wipe(&mut self, now_ms: i64, revocation: Revocation) {
        let device = self.device;
        self.state.outbox = None;
        if device.keychain.delete(DEVICE_SECRET).is_err() {
            tracing::error!("keychain entry could not be deleted during wipe");
        }
        let paths = &device.paths;
        let results = [
            remove_file(&paths.device_key, "device-key.json"),
            remove_file(&paths.recovery_key, "recovery-key.json"),
            device.users.remove_all(),
            db::remove_files(&paths.outbox).map_err(|e| AppError::Io("outbox", e)),
            remove_file(&paths.enrollment, "enrollment.json"),
            remove_file(&paths.pinned_ca, "server-ca.pem"),
            write_json(
                &paths.revoked,
                &serde_json::json!({
                    "revoked_at_ms": now_ms,
                    "handed_in": revocation.handed_in,
                    "left_behind": revocation.left_behind,
                }),
            ),
        ];
        for r in results {
            if let Err(e) = r {
                tracing::error!(code = %e.to_api().code, "wipe step failed");
            }
        }
        self.state.enrolled = None;
        self.state.revoked = Some(revocation);
    }
}
