//! The per-clinic keys of sensitive fields: a data key that seals each value
//! (XChaCha20-Poly1305, bound to the clinic, the value's id and its field), and an index key
//! that makes keyed blind indexes (HMAC-SHA-256), so an exact-match search never needs the
//! plaintext in the database. Both are random 32-byte keys, stored only wrapped by a
//! key-encryption key (`secrets::kek`).

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use clinicdesk_protocol::audit::to_hex;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::ServerError;
use crate::secrets::aead;

const SEAL_TAG: &[u8] = b"clinicdesk-field-v1\0";

/// A fresh random key.
pub fn new_key() -> Result<Zeroizing<[u8; 32]>, ServerError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut()).map_err(|_| ServerError::Internal("os random source failed"))?;
    Ok(key)
}

/// Which clinic key a wrapped key is: what the key-encryption key binds it to, so a wrapped
/// key copied to another clinic's row, purpose or id does not open.
pub fn wrap_context(clinic: Uuid, purpose: &str, key_id: u32) -> Vec<u8> {
    [
        clinic.as_bytes().as_slice(),
        purpose.as_bytes(),
        b"\0",
        &key_id.to_be_bytes(),
    ]
    .concat()
}

/// A clinic's data key, with its id (its version within the clinic).
pub struct DataKey {
    id: u32,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({}, <redacted>)", self.id)
    }
}

/// What one sealed value is: its clinic, its id, and the field it holds.
pub struct SealedOf<'a> {
    pub clinic: Uuid,
    pub value_id: Uuid,
    pub field: &'a str,
}

impl SealedOf<'_> {
    fn aad(&self) -> Vec<u8> {
        [
            SEAL_TAG,
            self.clinic.as_bytes(),
            self.value_id.as_bytes(),
            self.field.as_bytes(),
        ]
        .concat()
    }
}

impl DataKey {
    pub fn new(id: u32, key: &[u8; 32]) -> Self {
        Self {
            id,
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// `nonce ‖ ciphertext`.
    pub fn seal(&self, of: &SealedOf<'_>, plaintext: &str) -> Result<Vec<u8>, ServerError> {
        aead::seal(&self.cipher, &of.aad(), plaintext.as_bytes())
            .ok_or(ServerError::Internal("seal"))
    }

    /// The plaintext of a value this key sealed for `of`; an error for anything else (another
    /// key, another value's or clinic's ciphertext, a flipped bit).
    pub fn open(&self, of: &SealedOf<'_>, sealed: &[u8]) -> Result<Zeroizing<String>, ServerError> {
        let refused = || ServerError::Internal("sealed field does not open");
        let plain = aead::open(&self.cipher, &of.aad(), sealed).ok_or_else(refused)?;
        String::from_utf8(plain)
            .map(Zeroizing::new)
            .map_err(|_| refused())
    }
}

/// A clinic's blind-index key, with its id (its version within the clinic).
pub struct IndexKey {
    id: u32,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexKey({}, <redacted>)", self.id)
    }
}

impl IndexKey {
    pub fn new(id: u32, key: &[u8; 32]) -> Self {
        Self {
            id,
            key: Zeroizing::new(*key),
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The blind index of `value` as `kind` (e.g. a whole SSN, or its last four digits): hex
    /// of HMAC-SHA-256 under the clinic's key, so equal values match within the clinic and
    /// nothing about a value can be learned without the key.
    pub fn index(&self, kind: &str, value: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref()) else {
            unreachable!("HMAC takes a key of any length")
        };
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        to_hex(&mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_as_what_it_was_sealed_for() {
        let key = DataKey::new(1, &[3u8; 32]);
        let of = SealedOf {
            clinic: Uuid::from_u128(1),
            value_id: Uuid::from_u128(2),
            field: "ssn",
        };
        let sealed = key.seal(&of, "999-00-1234").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"999-00-1234"));
        assert_eq!(key.open(&of, &sealed).unwrap().as_str(), "999-00-1234");
        let moved = SealedOf {
            value_id: Uuid::from_u128(3),
            ..of
        };
        assert!(key.open(&moved, &sealed).is_err(), "another value's row");
        let other_clinic = SealedOf {
            clinic: Uuid::from_u128(9),
            value_id: Uuid::from_u128(2),
            field: "ssn",
        };
        assert!(key.open(&other_clinic, &sealed).is_err());
        assert!(DataKey::new(2, &[4u8; 32]).open(&of, &sealed).is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(key.open(&of, &flipped).is_err());
        // Two seals of one value differ (a fresh nonce each), so equal values do not show.
        assert_ne!(key.seal(&of, "999-00-1234").unwrap(), sealed);
    }

    #[test]
    fn blind_indexes_match_equal_values_under_one_key_only() {
        let a = IndexKey::new(1, &[1u8; 32]);
        let b = IndexKey::new(2, &[2u8; 32]);
        assert_eq!(a.index("ssn", "999-00-1234"), a.index("ssn", "999-00-1234"));
        assert_ne!(a.index("ssn", "999-00-1234"), a.index("ssn", "999-00-1235"));
        assert_ne!(a.index("ssn", "1234"), a.index("ssn4", "1234"));
        assert_ne!(a.index("ssn", "999-00-1234"), b.index("ssn", "999-00-1234"));
    }
}
