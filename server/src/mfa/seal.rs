//! Sealing of second-factor secrets at rest: XChaCha20-Poly1305 under a key in
//! `DATA_DIR/mfa-seal.key`, bound to the owning user's id, so a copy of the database
//! alone yields no TOTP secret and a sealed value moved to another user does not open.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use clinicdesk_protocol::audit::{from_hex, to_hex};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::key_file::{self, KeyFileError};

pub const KEY_FILE: &str = "mfa-seal.key";
const AAD_TAG: &[u8] = b"clinicdesk-mfa-seal-v1\0";

pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

fn aad(user_id: Uuid) -> Vec<u8> {
    [AAD_TAG, user_id.as_bytes()].concat()
}

impl SealKey {
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyFileError> {
        let key = key_file::load_or_create(data_dir, KEY_FILE)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(key.as_ref().into()),
        })
    }

    /// `nonce ‖ ciphertext` as hex.
    pub fn seal(&self, user_id: Uuid, plaintext: &[u8]) -> Result<String, ServerError> {
        let nonce = crate::random::bytes::<24>()?;
        let aad = aad(user_id);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| ServerError::Internal("seal"))?;
        Ok(to_hex(&[nonce.as_slice(), &ciphertext].concat()))
    }

    pub fn open(&self, user_id: Uuid, sealed: &str) -> Result<Zeroizing<Vec<u8>>, ServerError> {
        let bytes = from_hex(sealed).ok_or(ServerError::Internal("sealed value malformed"))?;
        if bytes.len() < 24 {
            return Err(ServerError::Internal("sealed value malformed"));
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let aad = aad(user_id);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| ServerError::Internal("sealed value does not open"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_user_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::load_or_create(dir.path()).unwrap();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let sealed = key.seal(alice, b"CANARY-secret").unwrap();
        assert!(!sealed.contains(&to_hex(b"CANARY-secret")));
        assert_eq!(
            key.open(alice, &sealed).unwrap().as_slice(),
            b"CANARY-secret"
        );
        assert!(key.open(bob, &sealed).is_err());
        let other = SealKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(other.open(alice, &sealed).is_err());
        let mut flipped = sealed.into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert!(
            key.open(alice, &String::from_utf8(flipped).unwrap())
                .is_err()
        );
    }
}
