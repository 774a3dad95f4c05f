//! Sealing of secrets at rest: XChaCha20-Poly1305 under a key file in the data directory,
//! one key per purpose, each value bound to its owner's id. A copy of the database alone
//! yields no secret, and a sealed value moved to another owner does not open.
//!
//! - [`SealKey::mfa`]: TOTP secrets (`mfa-seal.key`), owned by a user.
//! - [`SealKey::escrow`]: escrowed device secrets (`device-escrow.key`), owned by a device.

use std::path::Path;

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use clinicdesk_protocol::audit::{from_hex, to_hex};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::secrets::aead;
use crate::secrets::key_file::{self, KeyFileError};

pub const MFA_KEY_FILE: &str = "mfa-seal.key";
pub const ESCROW_KEY_FILE: &str = "device-escrow.key";

pub struct SealKey {
    cipher: XChaCha20Poly1305,
    tag: &'static [u8],
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    /// The key that seals second-factor secrets.
    pub fn mfa(data_dir: &Path) -> Result<Self, KeyFileError> {
        Self::load_or_create(data_dir, MFA_KEY_FILE, b"clinicdesk-mfa-seal-v1\0")
    }

    /// The key that seals workstations' escrowed device secrets.
    pub fn escrow(data_dir: &Path) -> Result<Self, KeyFileError> {
        Self::load_or_create(data_dir, ESCROW_KEY_FILE, b"clinicdesk-device-escrow-v1\0")
    }

    fn load_or_create(
        data_dir: &Path,
        file: &str,
        tag: &'static [u8],
    ) -> Result<Self, KeyFileError> {
        let key = key_file::load_or_create(data_dir, file)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(key.as_ref().into()),
            tag,
        })
    }

    fn aad(&self, owner: Uuid) -> Vec<u8> {
        [self.tag, owner.as_bytes()].concat()
    }

    /// `nonce ‖ ciphertext` as hex.
    pub fn seal(&self, owner: Uuid, plaintext: &[u8]) -> Result<String, ServerError> {
        aead::seal(&self.cipher, &self.aad(owner), plaintext)
            .map(|sealed| to_hex(&sealed))
            .ok_or(ServerError::Internal("seal"))
    }

    pub fn open(&self, owner: Uuid, sealed: &str) -> Result<Zeroizing<Vec<u8>>, ServerError> {
        let bytes = from_hex(sealed).ok_or(ServerError::Internal("sealed value malformed"))?;
        aead::open(&self.cipher, &self.aad(owner), &bytes)
            .map(Zeroizing::new)
            .ok_or(ServerError::Internal("sealed value does not open"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_owner_key_and_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::mfa(dir.path()).unwrap();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let sealed = key.seal(alice, b"CANARY-secret").unwrap();
        assert!(!sealed.contains(&to_hex(b"CANARY-secret")));
        assert_eq!(
            key.open(alice, &sealed).unwrap().as_slice(),
            b"CANARY-secret"
        );
        assert!(key.open(bob, &sealed).is_err());
        let other = SealKey::mfa(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(other.open(alice, &sealed).is_err());
        // The escrow key is another key file: an MFA secret does not open as an escrow.
        let escrow = SealKey::escrow(dir.path()).unwrap();
        assert!(escrow.open(alice, &sealed).is_err());
        let mut flipped = sealed.into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(
            key.open(alice, &String::from_utf8(flipped).unwrap())
                .is_err()
        );
    }
}
