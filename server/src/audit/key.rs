//! The server's audit key: Ed25519, signs checkpoints, receipts, export ends and the
//! server's own audit chains. It lives in `DATA_DIR/audit-signing.key` (see
//! [`crate::secrets::key_file`]). `audit rotate-key` replaces it: the retiring key signs its
//! successor ([`KeyRotation`]), and the records of every rotation stay in
//! `DATA_DIR/audit-key-rotations.json` (public: keys, times and signatures), so the events
//! and checkpoints an old key signed still verify, and a workstation that pinned it follows
//! the records to the new one.

use std::io::Write;
use std::path::{Path, PathBuf};

use clinicdesk_protocol::audit::{from_hex, to_hex};
use clinicdesk_protocol::rotation::{KeyRotation, ServerKeys};
// Signatures of the audit format (events, checkpoints, receipts, export bundles) are
// verified by its own rule, in the protocol crate.
pub use clinicdesk_protocol::signature::{PublicKey, verify_hex};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::secrets::key_file::{self, KeyFileError};

pub const KEY_FILE: &str = "audit-signing.key";
/// The successor a rotation made, until it replaces [`KEY_FILE`].
const NEXT_FILE: &str = "audit-signing.key.next";
pub const ROTATIONS_FILE: &str = "audit-key-rotations.json";

pub struct AuditKey {
    signing: SigningKey,
    public: PublicKey,
    /// Every rotation that led to this key, oldest first.
    rotations: Vec<KeyRotation>,
    keys: ServerKeys,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.public_hex())
    }
}

impl AuditKey {
    /// Loads `DIR/audit-signing.key` (creating it on first use) with the records of its
    /// rotations. A rotation interrupted after its record was written is finished here; one
    /// interrupted before leaves a successor nobody was told of, which is deleted.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyFileError> {
        let rotations = read_rotations(data_dir)?;
        let next = data_dir.join(NEXT_FILE);
        if next.exists() {
            let successor = Self::from_seed(data_dir, NEXT_FILE, Vec::new())?;
            let recorded = rotations
                .last()
                .is_some_and(|r| r.new_key == successor.public_hex());
            let io = |source| KeyFileError::Io {
                path: next.clone(),
                source,
            };
            if recorded {
                std::fs::rename(&next, data_dir.join(KEY_FILE)).map_err(io)?;
            } else {
                std::fs::remove_file(&next).map_err(io)?;
            }
        }
        Self::from_seed(data_dir, KEY_FILE, rotations)
    }

    fn from_seed(
        data_dir: &Path,
        file: &str,
        rotations: Vec<KeyRotation>,
    ) -> Result<Self, KeyFileError> {
        let seed = key_file::load_or_create(data_dir, file)?;
        let signing = SigningKey::from_bytes(&seed);
        // A key derived from a seed is never of low order; refuse rather than assume.
        let public = PublicKey::from_bytes(signing.verifying_key().as_bytes()).ok_or(
            KeyFileError::Malformed {
                path: data_dir.join(file),
            },
        )?;
        let keys = ServerKeys::from_rotations(public, &rotations).map_err(|_| {
            KeyFileError::Malformed {
                path: data_dir.join(ROTATIONS_FILE),
            }
        })?;
        Ok(Self {
            signing,
            public,
            rotations,
            keys,
        })
    }

    /// Replaces the key of `data_dir` with a new one that takes over at `at_ms`: the
    /// successor is written first, then the record the old key signs for it, then the
    /// successor takes the key file's place. The old key's secret is gone after; its public
    /// key stays in the records. Run with the server stopped (it loads the key at start).
    pub fn rotate(data_dir: &Path, at_ms: i64) -> Result<KeyRotation, KeyFileError> {
        if !data_dir.join(KEY_FILE).exists() {
            return Err(KeyFileError::Io {
                path: data_dir.join(KEY_FILE),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let old = Self::load_or_create(data_dir)?;
        // Refused before a successor file exists: nothing is left behind.
        if old.rotations.last().is_some_and(|r| r.at_ms >= at_ms) {
            return Err(KeyFileError::RotationOutOfOrder);
        }
        let new = Self::from_seed(data_dir, NEXT_FILE, Vec::new())?;
        let bytes = KeyRotation::signed_bytes(&old.public, &new.public, at_ms);
        let rotation = KeyRotation {
            old_key: old.public_hex(),
            new_key: new.public_hex(),
            at_ms,
            signature: old.sign_hex(&bytes),
        };
        // The records must lead to the successor, in time order, or nothing changes.
        let mut rotations = old.rotations.clone();
        rotations.push(rotation.clone());
        ServerKeys::from_rotations(new.public, &rotations).map_err(|_| {
            KeyFileError::Malformed {
                path: data_dir.join(ROTATIONS_FILE),
            }
        })?;
        write_rotations(data_dir, &rotations)?;
        let next = data_dir.join(NEXT_FILE);
        std::fs::rename(&next, data_dir.join(KEY_FILE))
            .map_err(|source| KeyFileError::Io { path: next, source })?;
        Ok(rotation)
    }

    /// The records of every rotation that led to this key, oldest first.
    pub fn rotations(&self) -> &[KeyRotation] {
        &self.rotations
    }

    /// This key and the ones before it, each with the period it signed.
    pub fn server_keys(&self) -> &ServerKeys {
        &self.keys
    }

    pub fn sign_hex(&self, bytes: &[u8]) -> String {
        to_hex(&self.signing.sign(bytes).to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn public_hex(&self) -> String {
        to_hex(self.signing.verifying_key().as_bytes())
    }
}

fn read_rotations(data_dir: &Path) -> Result<Vec<KeyRotation>, KeyFileError> {
    let path = data_dir.join(ROTATIONS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| KeyFileError::Malformed { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(KeyFileError::Io { path, source }),
    }
}

/// Writes the records whole or not at all: a private temporary file, synced, renamed over.
fn write_rotations(data_dir: &Path, rotations: &[KeyRotation]) -> Result<(), KeyFileError> {
    let path = data_dir.join(ROTATIONS_FILE);
    let temporary: PathBuf = data_dir.join(format!("{ROTATIONS_FILE}.tmp"));
    let io = |source| KeyFileError::Io {
        path: path.clone(),
        source,
    };
    let json = serde_json::to_vec_pretty(rotations).map_err(|e| io(e.into()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(io)?;
    file.write_all(&json).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, &path).map_err(io)?;
    Ok(())
}

/// Verifies a hex Ed25519 signature strictly (RFC 8032 and ed25519-dalek's `verify_strict`):
/// the proofs of sign-in and recovery, which are not part of the audit format.
pub fn verify_strict_hex(key: &VerifyingKey, bytes: &[u8], signature_hex: &str) -> bool {
    from_hex(signature_hex)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b))
        .is_some_and(|sig| key.verify_strict(bytes, &sig).is_ok())
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
            Err(KeyFileError::Malformed { .. })
        ));
    }

    #[test]
    fn a_rotation_replaces_the_key_and_keeps_the_old_one_listed_for_its_period() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AuditKey::rotate(dir.path(), 1_000).is_err(), "no key yet");
        let first = AuditKey::load_or_create(dir.path()).unwrap();
        let rotation = AuditKey::rotate(dir.path(), 1_000).unwrap();
        let second = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(rotation.old_key, first.public_hex());
        assert_eq!(rotation.new_key, second.public_hex());
        assert_ne!(first.public_hex(), second.public_hex());
        assert_eq!(second.rotations(), [rotation]);
        assert_eq!(*second.server_keys().at(999), first.public_key());
        assert_eq!(*second.server_keys().at(1_000), second.public_key());
        AuditKey::rotate(dir.path(), 2_000).unwrap();
        let third = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(third.rotations().len(), 2);
        assert_eq!(*third.server_keys().at(1_500), second.public_key());
        // Not back in time: the records would no longer say which key signed when.
        assert!(matches!(
            AuditKey::rotate(dir.path(), 1_500),
            Err(KeyFileError::RotationOutOfOrder)
        ));
        assert!(
            !dir.path().join(NEXT_FILE).exists(),
            "no successor left behind"
        );
        assert_eq!(
            AuditKey::load_or_create(dir.path()).unwrap().public_hex(),
            third.public_hex()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ROTATIONS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_interrupted_rotation_is_finished_or_forgotten_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let first = AuditKey::load_or_create(dir.path()).unwrap();
        // Stopped after making the successor, before its record: nobody was told of it.
        let orphan = AuditKey::from_seed(dir.path(), NEXT_FILE, Vec::new()).unwrap();
        let loaded = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(loaded.public_hex(), first.public_hex());
        assert!(!dir.path().join(NEXT_FILE).exists());
        assert_ne!(orphan.public_hex(), first.public_hex());
        // Stopped after the record, before the successor took the key file's place: the
        // old key still in the key file, the successor beside it.
        let old_seed = std::fs::read(dir.path().join(KEY_FILE)).unwrap();
        let rotation = AuditKey::rotate(dir.path(), 1_000).unwrap();
        std::fs::rename(dir.path().join(KEY_FILE), dir.path().join(NEXT_FILE)).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), &old_seed).unwrap();
        let finished = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(finished.public_hex(), rotation.new_key);
        assert!(!dir.path().join(NEXT_FILE).exists());
    }
}
