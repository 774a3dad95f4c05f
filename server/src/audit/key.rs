//! The server's audit key: Ed25519, signs checkpoints, receipts and (with the server-events
//! work) the server's own audit chain. It lives in `DATA_DIR/audit-signing.key` (see
//! [`crate::secrets::key_file`]).

use std::path::Path;

use clinicdesk_protocol::audit::{from_hex, to_hex};
// Signatures of the audit format (events, checkpoints, receipts, export bundles) are
// verified by its own rule, in the protocol crate.
pub use clinicdesk_protocol::signature::{PublicKey, verify_hex};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::secrets::key_file::{self, KeyFileError};

pub const KEY_FILE: &str = "audit-signing.key";

pub struct AuditKey {
    signing: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.public_hex())
    }
}

impl AuditKey {
    /// Loads `DIR/audit-signing.key`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyFileError> {
        let seed = key_file::load_or_create(data_dir, KEY_FILE)?;
        let signing = SigningKey::from_bytes(&seed);
        // A key derived from a seed is never of low order; refuse rather than assume.
        let public = PublicKey::from_bytes(signing.verifying_key().as_bytes()).ok_or(
            KeyFileError::Malformed {
                path: data_dir.join(KEY_FILE),
            },
        )?;
        Ok(Self { signing, public })
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
}
