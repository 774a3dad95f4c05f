//! Where the app keeps its files and which server it enrolls with. Set by the clinic's IT
//! (or `cargo xtask demo`) through the environment; the UI cannot change it. [`Paths`]
//! names each file of the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Per-installation files: enrollment, pinned CA, the encrypted cache.
    pub data_dir: PathBuf,
    /// The server to enroll with, e.g. `https://127.0.0.1:8443`.
    pub server_url: String,
    /// The CA certificate (PEM) to pin at enrollment.
    pub enrollment_ca: Option<PathBuf>,
    /// Lowers the clinic's idle timeout (never raises it); for demos and tests.
    pub idle_override: Option<Duration>,
    /// The keychain service name entries are stored under.
    pub keychain_service: String,
    /// How often the uploader looks for events when it has nothing to do.
    pub upload_interval: Duration,
}

impl Config {
    /// Reads `CLINICDESK_*` variables; `default_data_dir` is the platform's app data dir.
    pub fn from_env(default_data_dir: PathBuf) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            data_dir: var("CLINICDESK_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or(default_data_dir),
            server_url: var("CLINICDESK_SERVER_URL")
                .unwrap_or_else(|| "https://127.0.0.1:8443".into()),
            enrollment_ca: var("CLINICDESK_SERVER_CA").map(PathBuf::from),
            idle_override: var("CLINICDESK_IDLE_SECS")
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs),
            keychain_service: var("CLINICDESK_KEYCHAIN_SERVICE")
                .unwrap_or_else(|| "ClinicDesk".into()),
            upload_interval: Duration::from_secs(2),
        }
    }
}

/// Files under the data directory (the per-user caches are in [`crate::local::users`]).
#[derive(Debug, Clone)]
pub struct Paths {
    pub install: PathBuf,
    pub enrollment: PathBuf,
    pub pinned_ca: PathBuf,
    pub outbox: PathBuf,
    /// The device key, wrapped under the device secret.
    pub device_key: PathBuf,
    /// The recovery key, wrapped under the device secret ([`crate::secrets::recovery_key`]).
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
