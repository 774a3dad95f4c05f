//! The server's audit key: Ed25519, signs checkpoints, receipts and (with the server-events
//! work) the server's own audit chain. It lives in `DATA_DIR/audit-signing.key` (0600),
//! created on first start, so a copy of the database alone cannot forge a checkpoint.
//! Instances sharing one PostgreSQL must be given the same key file.

use std::io::Write;
use std::path::{Path, PathBuf};

use clinicdesk_protocol::audit::{from_hex, to_hex};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

pub const KEY_FILE: &str = "audit-signing.key";

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("cannot read or write the audit key file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit key file {path} is not 64 hex digits")]
    Malformed { path: PathBuf },
    #[error("the OS random source failed")]
    Random,
}

pub struct AuditKey {
    signing: SigningKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.public_hex())
    }
}

impl AuditKey {
    /// Loads `DIR/audit-signing.key`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AuditKeyError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| AuditKeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let seed: Zeroizing<Vec<u8>> = Zeroizing::new(
                    from_hex(text.trim())
                        .ok_or_else(|| AuditKeyError::Malformed { path: path.clone() })?,
                );
                let seed: [u8; 32] = seed
                    .as_slice()
                    .try_into()
                    .map_err(|_| AuditKeyError::Malformed { path: path.clone() })?;
                Ok(Self {
                    signing: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = Zeroizing::new([0u8; 32]);
                getrandom::fill(seed.as_mut()).map_err(|_| AuditKeyError::Random)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&path).map_err(io)?;
                file.write_all(Zeroizing::new(to_hex(seed.as_ref())).as_bytes())
                    .map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(Self {
                    signing: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key from a fixed seed: tests and the seeder's synthetic fixtures only.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn sign_hex(&self, bytes: &[u8]) -> String {
        to_hex(&self.signing.sign(bytes).to_bytes())
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_hex(&self) -> String {
        to_hex(self.public_key().as_bytes())
    }
}

/// Verifies a hex Ed25519 signature strictly.
pub fn verify_hex(key: &VerifyingKey, bytes: &[u8], signature_hex: &str) -> bool {
    from_hex(signature_hex)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .is_some_and(|sig| key.verify_strict(bytes, &sig).is_ok())
}

/// Parses a hex Ed25519 public key.
pub fn public_key_from_hex(hex: &str) -> Option<VerifyingKey> {
    from_hex(hex)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditKey::load_or_create(dir.path()).unwrap();
        let b = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_hex(), b.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sig = a.sign_hex(b"checkpoint");
        assert!(verify_hex(&b.public_key(), b"checkpoint", &sig));
        assert!(!verify_hex(&b.public_key(), b"checkpoinT", &sig));
        std::fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        assert!(matches!(
            AuditKey::load_or_create(dir.path()),
            Err(AuditKeyError::Malformed { .. })
        ));
    }
}
