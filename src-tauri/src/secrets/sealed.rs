//! A 32-byte secret as this workstation stores it on disk: only ever XChaCha20-Poly1305
//! ciphertext under a key that never touches the disk, bound by its associated data to
//! one purpose (a sealed device key does not open as a recovery key).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use clinicdesk_protocol::audit::{from_hex, to_hex};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keychain::random_key;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sealed {
    pub version: u32,
    pub nonce: String,
    pub ciphertext: String,
}

/// Why a sealed secret did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Another key, another purpose, or an altered ciphertext: indistinguishable by design.
    #[error("sealed secret does not open with this key")]
    WrongKey,
    #[error("sealed secret malformed")]
    Malformed,
    #[error("no randomness")]
    Random,
}

impl Sealed {
    pub fn seal(key: &[u8; 32], aad: &[u8], secret: &[u8; 32]) -> Result<Self, SealError> {
        let nonce = random_key().map_err(|_| SealError::Random)?;
        let ciphertext = XChaCha20Poly1305::new(key.into())
            .encrypt(
                XNonce::from_slice(&nonce[..24]),
                Payload { msg: secret, aad },
            )
            .map_err(|_| SealError::Malformed)?;
        Ok(Self {
            version: 1,
            nonce: to_hex(&nonce[..24]),
            ciphertext: to_hex(&ciphertext),
        })
    }

    pub fn open(&self, key: &[u8; 32], aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let nonce = from_hex(&self.nonce)
            .filter(|n| n.len() == 24 && self.version == 1)
            .ok_or(SealError::Malformed)?;
        let ciphertext = from_hex(&self.ciphertext).ok_or(SealError::Malformed)?;
        let plain = Zeroizing::new(
            XChaCha20Poly1305::new(key.into())
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad,
                    },
                )
                .map_err(|_| SealError::WrongKey)?,
        );
        let mut secret = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(SealError::Malformed);
        }
        secret.copy_from_slice(&plain);
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_purpose_and_never_shows_in_the_json() {
        let secret = [9u8; 32];
        let sealed = Sealed::seal(&[1u8; 32], b"purpose-a", &secret).unwrap();
        assert_eq!(*sealed.open(&[1u8; 32], b"purpose-a").unwrap(), secret);
        assert_eq!(
            sealed.open(&[2u8; 32], b"purpose-a").unwrap_err(),
            SealError::WrongKey
        );
        assert_eq!(
            sealed.open(&[1u8; 32], b"purpose-b").unwrap_err(),
            SealError::WrongKey
        );
        let mut cut = sealed.clone();
        cut.ciphertext.truncate(10);
        assert_eq!(
            cut.open(&[1u8; 32], b"purpose-a").unwrap_err(),
            SealError::WrongKey
        );
        let mut future = sealed.clone();
        future.version = 2;
        assert_eq!(
            future.open(&[1u8; 32], b"purpose-a").unwrap_err(),
            SealError::Malformed
        );
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains(&to_hex(&secret)));
    }
}
