//! The app's small plain files (JSON records, the pinned CA, sealed keys), each written
//! whole through a temporary file and a rename, so a crash leaves the old file or the new
//! one and never half of either. Only sealed secrets and records without PHI come here:
//! PHI lives in the SQLCipher files of [`crate::local`].

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::error::AppError;

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

/// Writes via a temporary file and rename, so a crash leaves the old file or the new one.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AppError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|_| AppError::Internal("json"))?;
    write_atomic(path, &bytes)
}

/// Every file the app writes is its user's alone: 0600, in a directory of 0700 (a shared
/// workstation has other accounts, and a user's `key.json` is the wrapped cache key).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    write_private(path, bytes)
}

/// `dir`, created if missing, readable by its owner only (0700 on Unix).
pub(crate) fn private_dir(dir: &Path) -> Result<(), AppError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder
            .create(dir)
            .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
            .map_err(|e| AppError::Io("data dir", e))
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(|e| AppError::Io("data dir", e))
}

/// Writes `bytes` readable by the owner only (0600 on Unix), via a temporary file.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AppError> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
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

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> Option<u32> {
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }

    /// A user's `key.json` (and every other file the app writes) is readable by its owner
    /// only, in a directory only its owner can list, whatever the umask; a directory an
    /// older version left open is narrowed.
    #[test]
    fn what_the_app_writes_is_its_users_alone() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        fs::create_dir_all(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        let key = data.join("users").join("u1").join("key.json");
        write_json(&key, &serde_json::json!({ "version": 1 })).unwrap();
        assert_eq!(mode(&key), Some(0o600));
        assert_eq!(mode(key.parent().unwrap()), Some(0o700));
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), Some(0o700));
    }
}
