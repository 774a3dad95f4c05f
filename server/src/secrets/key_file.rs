//! 32-byte server keys kept as hex files in the data directory (0600), created on first
//! start, so a copy of the database alone cannot forge a checkpoint or unseal a secret.
//! Instances sharing one PostgreSQL must be given the same files.

use std::io::Write;
use std::path::{Path, PathBuf};

use clinicdesk_protocol::audit::{from_hex, to_hex};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read or write the key file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} is not 64 hex digits")]
    Malformed { path: PathBuf },
    #[error("the OS random source failed")]
    Random,
    #[error("a new audit key must take over after the last rotation, not at or before it")]
    RotationOutOfOrder,
}

/// The 32 bytes in `DIR/NAME`, created from the OS random source if the file is missing.
pub fn load_or_create(data_dir: &Path, name: &str) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let path = data_dir.join(name);
    let io = |source| KeyFileError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            let bytes = Zeroizing::new(
                from_hex(text.trim())
                    .ok_or_else(|| KeyFileError::Malformed { path: path.clone() })?,
            );
            let mut key = Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(KeyFileError::Malformed { path });
            }
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = Zeroizing::new([0u8; 32]);
            getrandom::fill(key.as_mut()).map_err(|_| KeyFileError::Random)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&path).map_err(io)?;
            file.write_all(Zeroizing::new(to_hex(key.as_ref())).as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_reloaded_and_malformed_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), "k.key").unwrap();
        let b = load_or_create(dir.path(), "k.key").unwrap();
        assert_eq!(*a, *b);
        assert_ne!(*a, [0u8; 32]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("k.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("k.key"), "abcd").unwrap();
        assert!(matches!(
            load_or_create(dir.path(), "k.key"),
            Err(KeyFileError::Malformed { .. })
        ));
    }
}
