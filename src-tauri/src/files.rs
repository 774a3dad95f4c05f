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
