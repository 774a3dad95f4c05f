//! This workstation's identity: an installation id, its Ed25519 device key (private half
//! on disk only wrapped under the device secret, which only the keychain holds), and, once
//! enrolled, the server's answer and the pinned CA. Its recovery key is in
//! [`crate::recovery_key`].

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use clinicdesk_protocol::audit::to_hex;
use zeroize::Zeroizing;

use crate::error::AppError;
use crate::keychain::random_key;
use crate::keys::DeviceSecret;
use crate::sealed::Sealed;

/// Files under the data directory (the per-user caches are in [`crate::users`]).
#[derive(Debug, Clone)]
pub struct Paths {
    pub install: PathBuf,
    pub enrollment: PathBuf,
    pub pinned_ca: PathBuf,
    pub outbox: PathBuf,
    /// The device key, wrapped under the device secret.
    pub device_key: PathBuf,
    /// The recovery key, wrapped under the device secret ([`crate::recovery_key`]).
    pub recovery_key: PathBuf,
    /// Present after the server revoked this device and it wiped itself.
    pub revoked: PathBuf,
}

impl Paths {
    pub fn under(data_dir: &Path) -> Self {
        Self {
            install: data_dir.join("install.json"),
            enrollment: data_dir.join("enrollment.json"),
            pinned_ca: data_dir.join("server-ca.pem"),
            outbox: data_dir.join("outbox.sqlite3"),
            device_key: data_dir.join("device-key.json"),
            recovery_key: data_dir.join("recovery-key.json"),
            revoked: data_dir.join("revoked.json"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Install {
    install_id: Uuid,
}

/// The installation id that names this install's keychain entries, created on first run.
pub fn install_id(paths: &Paths) -> Result<Uuid, AppError> {
    match fs::read(&paths.install) {
        Ok(bytes) => serde_json::from_slice::<Install>(&bytes)
            .map(|i| i.install_id)
            .map_err(|_| AppError::Config("install.json")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let install = Install {
                install_id: Uuid::new_v4(),
            };
            write_json(&paths.install, &install)?;
            Ok(install.install_id)
        }
        Err(e) => Err(AppError::Io("install.json", e)),
    }
}

/// What the server said at enrollment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrollment {
    pub device_id: Uuid,
    pub clinic_id: Uuid,
    pub clinic_name: String,
    pub server_url: String,
    pub device_name: String,
    /// The server's audit key (hex), pinned at enrollment: only receipts it signs make
    /// the outbox forget events. Enrollments from before receipts were signed have none:
    /// their events stay in the outbox (nothing is lost) until the device is re-enrolled.
    #[serde(default)]
    pub audit_public_key: String,
}

pub fn load_enrollment(paths: &Paths) -> Result<Option<Enrollment>, AppError> {
    read_json(&paths.enrollment, "enrollment.json")
}

/// Reads a JSON file written by [`write_json`]; a missing file is `None`.
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    name: &'static str,
) -> Result<Option<T>, AppError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| AppError::Config(name)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AppError::Io(name, e)),
    }
}

/// Removes a file if it exists.
pub fn remove_file(path: &Path, name: &'static str) -> Result<(), AppError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AppError::Io(name, e)),
    }
}

pub fn save_enrollment(paths: &Paths, enrollment: &Enrollment) -> Result<(), AppError> {
    write_json(&paths.enrollment, enrollment)
}

/// Writes via a temporary file and rename, so a crash leaves the old file or the new one.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AppError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|_| AppError::Internal("json"))?;
    write_atomic(path, &bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| AppError::Io("data dir", e))?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| AppError::Io("temp file", e))?;
    fs::rename(&tmp, path).map_err(|e| AppError::Io("rename", e))
}

/// Writes `bytes` readable by the owner only (0600 on Unix), via a temporary file.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| AppError::Io("data dir", e))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| AppError::Io("key file", e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| AppError::Io("key file", e))?;
    fs::rename(&tmp, path).map_err(|e| AppError::Io("rename", e))
}

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
