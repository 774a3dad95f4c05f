//! The embedded store's database key: 32 random bytes that encrypt the SQLite file (SQLCipher),
//! kept only wrapped by the key-encryption key, in `DATA_DIR/store-key.json`. The data
//! directory alone (the database, its WAL, this file) therefore opens nothing: the key
//! directory, kept apart, is needed too. `keys rotate` rewraps it under the new version.

use std::io::Write;
use std::path::{Path, PathBuf};

use clinicdesk_protocol::audit::{from_hex, to_hex};
use zeroize::Zeroizing;

use crate::secrets::kek::{KekError, KekVersion, KeyProvider};

/// The wrapped key's file in the data directory.
pub const FILE: &str = "store-key.json";

/// What the wrap is bound to: this key and no other.
const CONTEXT: &[u8] = b"clinicdesk-store-key-v1";

#[derive(Debug, thiserror::Error)]
pub enum StoreKeyError {
    #[error("cannot read or write the database key file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the database key file {path} is malformed")]
    Malformed { path: PathBuf },
    #[error(
        "the embedded database is encrypted but its key file {path} is missing: restore it \
         from the data directory's backup"
    )]
    Missing { path: PathBuf },
    #[error(transparent)]
    Provider(#[from] KekError),
    #[error("the OS random source failed")]
    Random,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Wrapped {
    kek_version: u32,
    /// Hex of the sealed key.
    wrapped: String,
}

fn path_of(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

fn read(data_dir: &Path) -> Result<Option<Wrapped>, StoreKeyError> {
    let path = path_of(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| StoreKeyError::Malformed { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreKeyError::Io { path, source }),
    }
}

/// Writes `w` as the data directory's key file: into a private temporary file first, then
/// renamed over the old one (`replace`) or linked where none is (`!replace`, so two processes
/// creating it at once keep one key: the loser's link fails and it reads the winner's).
/// Returns whether it was written.
fn write(data_dir: &Path, w: &Wrapped, replace: bool) -> Result<bool, StoreKeyError> {
    let path = path_of(data_dir);
    let io = |source| StoreKeyError::Io {
        path: path.clone(),
        source,
    };
    let tmp = data_dir.join(format!(
        "{FILE}.{}.{}.tmp",
        std::process::id(),
        w.wrapped.get(..8).unwrap_or("0")
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let text =
        serde_json::to_string(w).map_err(|_| StoreKeyError::Malformed { path: path.clone() })?;
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    let written = if replace {
        std::fs::rename(&tmp, &path).map_err(io)?;
        true
    } else {
        let linked = std::fs::hard_link(&tmp, &path);
        std::fs::remove_file(&tmp).map_err(io)?;
        match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io(e)),
        }
    };
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(written)
}

fn unwrap(
    data_dir: &Path,
    w: &Wrapped,
    keys: &dyn KeyProvider,
) -> Result<Zeroizing<[u8; 32]>, StoreKeyError> {
    let sealed = from_hex(&w.wrapped).ok_or_else(|| StoreKeyError::Malformed {
        path: path_of(data_dir),
    })?;
    Ok(keys.unwrap(KekVersion(w.kek_version), &sealed, CONTEXT)?)
}

/// The database key of `data_dir`'s embedded store, unwrapped; made (and stored wrapped
/// under the current key-encryption key) if there is none yet. `encrypted_exists` says the
/// database already holds encrypted pages: its key must be on file then, never made anew.
pub fn load_or_create(
    data_dir: &Path,
    keys: &dyn KeyProvider,
    encrypted_exists: bool,
) -> Result<Zeroizing<[u8; 32]>, StoreKeyError> {
    if let Some(w) = read(data_dir)? {
        return unwrap(data_dir, &w, keys);
    }
    if encrypted_exists {
        return Err(StoreKeyError::Missing {
            path: path_of(data_dir),
        });
    }
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut()).map_err(|_| StoreKeyError::Random)?;
    let version = keys.current()?;
    let w = Wrapped {
        kek_version: version.0,
        wrapped: to_hex(&keys.wrap(version, &key, CONTEXT)?),
    };
    if write(data_dir, &w, false)? {
        Ok(key)
    } else {
        // Another process made it first: its key is the one.
        let theirs = read(data_dir)?.ok_or_else(|| StoreKeyError::Missing {
            path: path_of(data_dir),
        })?;
        unwrap(data_dir, &theirs, keys)
    }
}

/// The key-encryption key version the database key is wrapped under (`None`: no embedded
/// store's key in this data directory).
pub fn wrapped_under(data_dir: &Path) -> Result<Option<KekVersion>, StoreKeyError> {
    Ok(read(data_dir)?.map(|w| KekVersion(w.kek_version)))
}

/// Rewraps the database key under `to` (nothing to do if it is already, or if there is no
/// key). Returns whether it was rewrapped. The file is replaced whole, so a kill leaves the
/// old wrap or the new one.
pub fn rewrap(
    data_dir: &Path,
    keys: &dyn KeyProvider,
    to: KekVersion,
) -> Result<bool, StoreKeyError> {
    let Some(w) = read(data_dir)? else {
        return Ok(false);
    };
    if w.kek_version == to.0 {
        return Ok(false);
    }
    let key = unwrap(data_dir, &w, keys)?;
    let rewrapped = Wrapped {
        kek_version: to.0,
        wrapped: to_hex(&keys.wrap(to, &key, CONTEXT)?),
    };
    write(data_dir, &rewrapped, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::secrets::kek::KeyFileProvider;

    #[test]
    fn made_once_wrapped_rewrapped_and_never_made_anew_for_an_encrypted_store() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyFileProvider::new(dir.path().join("kek"));
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();

        let key = load_or_create(&data, &keys, false).unwrap();
        assert_eq!(*load_or_create(&data, &keys, true).unwrap(), *key);
        let text = std::fs::read_to_string(data.join(FILE)).unwrap();
        assert!(!text.contains(&to_hex(key.as_ref())), "stored only wrapped");
        assert_eq!(wrapped_under(&data).unwrap(), Some(KekVersion(1)));

        let v2 = keys.rotate().unwrap();
        assert!(rewrap(&data, &keys, v2).unwrap());
        assert!(!rewrap(&data, &keys, v2).unwrap());
        keys.retire(KekVersion(1)).unwrap();
        assert_eq!(wrapped_under(&data).unwrap(), Some(v2));
        assert_eq!(*load_or_create(&data, &keys, true).unwrap(), *key);

        // Without its key directory, the file opens nothing.
        let elsewhere = KeyFileProvider::new(dir.path().join("other-kek"));
        assert!(load_or_create(&data, &elsewhere, true).is_err());

        std::fs::remove_file(data.join(FILE)).unwrap();
        assert!(matches!(
            load_or_create(&data, &keys, true),
            Err(StoreKeyError::Missing { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            load_or_create(&data, &keys, false).unwrap();
            let mode = std::fs::metadata(data.join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
