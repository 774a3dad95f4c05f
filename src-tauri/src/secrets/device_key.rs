//! This workstation's Ed25519 device key: it signs login proofs and audit events. Its
//! private half is on disk only sealed under a key derived from the device secret, which
//! only the keychain holds. The recovery key is in [`super::recovery_key`].

use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use clinicdesk_protocol::audit::to_hex;

use super::keychain::random_key;
use super::keys::DeviceSecret;
use super::sealed::Sealed;
use crate::config::Paths;
use crate::error::AppError;
use crate::files::{read_json, write_private};

const DEVICE_KEY_AAD: &[u8] = b"clinicdesk/device-key/v1";

fn device_key_wrap_key(secret: &DeviceSecret) -> Result<Zeroizing<[u8; 32]>, AppError> {
    secret
        .device_key_wrap_key()
        .map_err(|_| AppError::Internal("device key wrap key"))
}

/// The device's Ed25519 signing key. `SigningKey` zeroizes itself on drop; there is no
/// `Debug` that could print it.
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    /// Creates a key and stores its private half on disk, wrapped under the device secret.
    pub fn create(paths: &Paths, secret: &DeviceSecret) -> Result<Self, AppError> {
        let seed = random_key()?;
        let sealed = Sealed::seal(&*device_key_wrap_key(secret)?, DEVICE_KEY_AAD, &seed)
            .map_err(|_| AppError::Internal("device key wrap"))?;
        let json = serde_json::to_vec(&sealed).map_err(|_| AppError::Internal("json"))?;
        write_private(&paths.device_key, &json)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// A key from a raw seed, for benchmarks that run without a keychain.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The device key, unwrapped with the device secret. A missing file is a broken
    /// enrollment; one that does not open belongs to another device secret.
    pub fn load(paths: &Paths, secret: &DeviceSecret) -> Result<Self, AppError> {
        let sealed: Sealed = read_json(&paths.device_key, "device-key.json")?
            .ok_or(AppError::Config("device-key.json"))?;
        let seed = sealed
            .open(&*device_key_wrap_key(secret)?, DEVICE_KEY_AAD)
            .map_err(|_| AppError::Config("device-key.json"))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn public_key_hex(&self) -> String {
        to_hex(self.0.verifying_key().as_bytes())
    }

    /// Signature as hex.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        to_hex(&self.0.sign(message).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_key_on_disk_opens_only_with_its_device_secret_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let secret = DeviceSecret::from_bytes(Zeroizing::new([7u8; 32]));
        let key = DeviceKey::create(&paths, &secret).unwrap();
        let again = DeviceKey::load(&paths, &secret).unwrap();
        assert_eq!(key.public_key_hex(), again.public_key_hex());
        let other = DeviceSecret::from_bytes(Zeroizing::new([8u8; 32]));
        assert!(matches!(
            DeviceKey::load(&paths, &other),
            Err(AppError::Config("device-key.json"))
        ));
        let on_disk = std::fs::read_to_string(&paths.device_key).unwrap();
        assert!(!on_disk.contains(&to_hex(key.0.to_bytes().as_slice())));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.device_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
