//! Key-encryption keys: they wrap each clinic's data keys, and are kept apart from the data.
//! [`KeyProvider`] is what the server asks of wherever they live; [`KeyFileProvider`], the
//! default, keeps them as versioned files in a directory outside the data directory (by
//! default `DATA_DIR.keys`, beside it), so a copy of the database, or of the data directory
//! with it, opens no sensitive field. A KMS or Vault is another implementation of the trait.
//!
//! Versions only grow: [`KeyProvider::rotate`] makes a new one current, the old ones still
//! unwrap what they wrapped until they are retired.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use zeroize::Zeroizing;

use crate::secrets::aead;
use crate::secrets::key_file::{self, KeyFileError};

/// A version of the key-encryption key (1, 2, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KekVersion(pub u32);

impl std::fmt::Display for KekVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error("cannot list the key directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key-encryption key {0} is not on file (retired, or the key directory is wrong)")]
    Unknown(KekVersion),
    #[error("a wrapped key does not open under key-encryption key {0}")]
    DoesNotOpen(KekVersion),
    #[error("the OS random source failed")]
    Random,
}

/// Where key-encryption keys live, and the one thing done with them: wrapping and
/// unwrapping 32-byte keys, each bound to a `context` (whose key it is).
pub trait KeyProvider: Send + Sync {
    /// The version that wraps new keys; the first is created if there is none.
    fn current(&self) -> Result<KekVersion, KekError>;
    fn wrap(
        &self,
        version: KekVersion,
        key: &[u8; 32],
        context: &[u8],
    ) -> Result<Vec<u8>, KekError>;
    fn unwrap(
        &self,
        version: KekVersion,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, KekError>;
    /// Makes a new version current; the older ones still unwrap.
    fn rotate(&self) -> Result<KekVersion, KekError>;
    /// Destroys `version`: nothing it wrapped opens again.
    fn retire(&self, version: KekVersion) -> Result<(), KekError>;
    /// The versions on file, oldest first.
    fn versions(&self) -> Result<Vec<KekVersion>, KekError>;
}

const WRAP_TAG: &[u8] = b"clinicdesk-kek-wrap-v1\0";

/// Key-encryption keys as files `kek-000001.key`, ... (64 hex digits, 0600) in a directory
/// (0700) of their own.
pub struct KeyFileProvider {
    dir: PathBuf,
    /// Keys read once: a version's bytes never change while it is on file.
    loaded: Mutex<Vec<(KekVersion, XChaCha20Poly1305)>>,
}

impl std::fmt::Debug for KeyFileProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyFileProvider({})", self.dir.display())
    }
}

impl KeyFileProvider {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// The default for a data directory: `DATA_DIR.keys`, beside it and not inside it, so
    /// that the data directory can be copied, backed up or handed over without them.
    pub fn default_dir(data_dir: &Path) -> PathBuf {
        let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        let mut name = absolute
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "clinicdesk".into());
        name.push(".keys");
        absolute.with_file_name(name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file_name(version: KekVersion) -> String {
        format!("kek-{:06}.key", version.0)
    }

    fn ensure_dir(&self) -> Result<(), KekError> {
        let io = |source| KekError::Dir {
            path: self.dir.clone(),
            source,
        };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.dir).map_err(io)
    }

    fn cipher(&self, version: KekVersion) -> Result<XChaCha20Poly1305, KekError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = loaded.iter().find(|(v, _)| *v == version) {
            return Ok(c.clone());
        }
        if !self.versions()?.contains(&version) {
            return Err(KekError::Unknown(version));
        }
        let key = key_file::load_or_create(&self.dir, &Self::file_name(version))?;
        let cipher = XChaCha20Poly1305::new(key.as_ref().into());
        loaded.push((version, cipher.clone()));
        Ok(cipher)
    }

    fn aad(version: KekVersion, context: &[u8]) -> Vec<u8> {
        [WRAP_TAG, &version.0.to_be_bytes(), context].concat()
    }
}

impl KeyProvider for KeyFileProvider {
    fn current(&self) -> Result<KekVersion, KekError> {
        match self.versions()?.last() {
            Some(v) => Ok(*v),
            None => self.rotate(),
        }
    }

    fn wrap(
        &self,
        version: KekVersion,
        key: &[u8; 32],
        context: &[u8],
    ) -> Result<Vec<u8>, KekError> {
        let cipher = self.cipher(version)?;
        aead::seal(&cipher, &Self::aad(version, context), key).ok_or(KekError::Random)
    }

    fn unwrap(
        &self,
        version: KekVersion,
        wrapped: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, KekError> {
        let cipher = self.cipher(version)?;
        let opened = Zeroizing::new(
            aead::open(&cipher, &Self::aad(version, context), wrapped)
                .ok_or(KekError::DoesNotOpen(version))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if opened.len() != key.len() {
            return Err(KekError::DoesNotOpen(version));
        }
        key.copy_from_slice(&opened);
        Ok(key)
    }

    fn rotate(&self) -> Result<KekVersion, KekError> {
        self.ensure_dir()?;
        let next = KekVersion(self.versions()?.last().map_or(1, |v| v.0 + 1));
        // `load_or_create` creates the file with `create_new` and otherwise reads it: two
        // processes rotating at once share one new version, never two keys under one number.
        key_file::load_or_create(&self.dir, &Self::file_name(next))?;
        Ok(next)
    }

    fn retire(&self, version: KekVersion) -> Result<(), KekError> {
        let path = self.dir.join(Self::file_name(version));
        let io = |source| KekError::Dir {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            return Err(KekError::Unknown(version));
        }
        // Overwritten before it is unlinked, so the bytes do not linger in the file's blocks
        // (as far as the filesystem allows; see the README on backups of the key directory).
        std::fs::write(&path, "0".repeat(64)).map_err(io)?;
        std::fs::remove_file(&path).map_err(io)?;
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(v, _)| *v != version);
        Ok(())
    }

    fn versions(&self) -> Result<Vec<KekVersion>, KekError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(KekError::Dir {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut out: Vec<KekVersion> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let digits = name.strip_prefix("kek-")?.strip_suffix(".key")?;
                digits.parse().ok().map(KekVersion)
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_under_its_version_and_context_until_retired() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyFileProvider::new(dir.path().join("kek"));
        assert!(keys.versions().unwrap().is_empty());
        let v1 = keys.current().unwrap();
        assert_eq!(v1, KekVersion(1));
        let data_key = [7u8; 32];
        let wrapped = keys.wrap(v1, &data_key, b"clinic-a").unwrap();
        assert!(!wrapped.windows(32).any(|w| w == data_key));
        assert_eq!(*keys.unwrap(v1, &wrapped, b"clinic-a").unwrap(), data_key);
        assert!(matches!(
            keys.unwrap(v1, &wrapped, b"clinic-b"),
            Err(KekError::DoesNotOpen(_))
        ));

        let v2 = keys.rotate().unwrap();
        assert_eq!(
            (v2, keys.current().unwrap()),
            (KekVersion(2), KekVersion(2))
        );
        assert!(keys.unwrap(v2, &wrapped, b"clinic-a").is_err());
        assert_eq!(*keys.unwrap(v1, &wrapped, b"clinic-a").unwrap(), data_key);
        // Another process (a second provider on the same directory) sees the same keys.
        let other = KeyFileProvider::new(dir.path().join("kek"));
        assert_eq!(*other.unwrap(v1, &wrapped, b"clinic-a").unwrap(), data_key);

        keys.retire(v1).unwrap();
        assert_eq!(keys.versions().unwrap(), vec![v2]);
        assert!(matches!(
            keys.unwrap(v1, &wrapped, b"clinic-a"),
            Err(KekError::Unknown(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("kek")), 0o700);
            assert_eq!(mode(&dir.path().join("kek/kek-000002.key")), 0o600);
        }
    }

    #[test]
    fn the_default_directory_is_beside_the_data_directory_not_in_it() {
        let dir = KeyFileProvider::default_dir(Path::new("/srv/clinicdesk/data"));
        assert_eq!(dir, Path::new("/srv/clinicdesk/data.keys"));
    }
}
