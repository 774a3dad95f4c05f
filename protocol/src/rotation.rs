//! Rotating the server's audit key. The retiring key signs its successor and the moment it
//! takes over ([`KeyRotation`]); the server keeps every such record and hands them out with
//! its keys (`audit keys`, export headers) and its receipts. So a verifier holding any one
//! of the keys, such as the key a workstation pinned at enrollment, can follow the records
//! to the current one, and knows which key signed what: the key in force at a server
//! event's `occurred_at_ms`, a checkpoint's `issued_at_ms` or an export's `exported_at_ms`
//! ([`ServerKeys::at`]). A retired key signs nothing dated after its successor took over.
//! `docs/audit-format.md` ("Rotating the audit key") specifies it.

use serde::{Deserialize, Serialize};

#[cfg(feature = "signatures")]
pub use checked::{RotationError, ServerKeys, follow};

#[cfg(feature = "signatures")]
const ROTATION_TAG: &[u8] = b"clinicdesk-key-rotation-v1\0";

/// The retiring audit key's word for its successor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyRotation {
    /// The retiring key, 64 hex digits.
    pub old_key: String,
    /// Its successor, 64 hex digits.
    pub new_key: String,
    /// From this moment (UTC milliseconds) the successor signs; the old key signed what
    /// is dated before it.
    pub at_ms: i64,
    /// The old key's signature over [`KeyRotation::signed_bytes`], 128 hex digits.
    pub signature: String,
}

/// The checks, for those who verify signatures (the server and the app; feature
/// `signatures`).
#[cfg(feature = "signatures")]
mod checked {
    use super::{KeyRotation, ROTATION_TAG};
    use crate::signature::{PublicKey, verify_hex};

    impl KeyRotation {
        /// Tag, the old key, the new key, `at_ms`.
        pub fn signed_bytes(old: &PublicKey, new: &PublicKey, at_ms: i64) -> Vec<u8> {
            let mut out = Vec::with_capacity(ROTATION_TAG.len() + 72);
            out.extend_from_slice(ROTATION_TAG);
            out.extend_from_slice(old.as_bytes());
            out.extend_from_slice(new.as_bytes());
            out.extend_from_slice(&at_ms.to_be_bytes());
            out
        }

        /// The two keys, when the old one signed this record.
        fn checked(&self) -> Option<(PublicKey, PublicKey)> {
            let old = PublicKey::from_hex(&self.old_key)?;
            let new = PublicKey::from_hex(&self.new_key)?;
            let bytes = Self::signed_bytes(&old, &new, self.at_ms);
            verify_hex(&old, &bytes, &self.signature).then_some((old, new))
        }
    }

    /// Why a list of rotations does not lead to the key it should.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub enum RotationError {
        #[error("rotation {0} is not signed by the key before it")]
        BadSignature(usize),
        #[error("rotation {0} does not start from the key the one before it ended with")]
        Broken(usize),
        #[error("rotation {0} takes over no later than the one before it")]
        OutOfOrder(usize),
        #[error("the rotations end at another key than the current one")]
        WrongEnd,
    }

    /// The server's audit keys over time: the first, and each successor with the moment it
    /// took over.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ServerKeys {
        first: PublicKey,
        successors: Vec<(i64, PublicKey)>,
    }

    impl ServerKeys {
        /// A key that was never rotated.
        pub fn single(key: PublicKey) -> Self {
            Self {
                first: key,
                successors: Vec::new(),
            }
        }

        /// The keys from `rotations` (oldest first): each signed by the key before it, in time
        /// order, the last one's successor `current` (the first key itself when there are none).
        pub fn from_rotations(
            current: PublicKey,
            rotations: &[KeyRotation],
        ) -> Result<Self, RotationError> {
            let Some(first) = rotations.first() else {
                return Ok(Self::single(current));
            };
            let first =
                PublicKey::from_hex(&first.old_key).ok_or(RotationError::BadSignature(0))?;
            let mut keys = Self::single(first);
            for (i, rotation) in rotations.iter().enumerate() {
                let (old, new) = rotation.checked().ok_or(RotationError::BadSignature(i))?;
                if old != *keys.current() {
                    return Err(RotationError::Broken(i));
                }
                if keys
                    .successors
                    .last()
                    .is_some_and(|(at, _)| *at >= rotation.at_ms)
                {
                    return Err(RotationError::OutOfOrder(i));
                }
                keys.successors.push((rotation.at_ms, new));
            }
            if *keys.current() != current {
                return Err(RotationError::WrongEnd);
            }
            Ok(keys)
        }

        /// The key in force at `at_ms`: the one that signed what is dated then.
        pub fn at(&self, at_ms: i64) -> &PublicKey {
            self.successors
                .iter()
                .rev()
                .find(|(from, _)| *from <= at_ms)
                .map_or(&self.first, |(_, key)| key)
        }

        /// The key that signs now.
        pub fn current(&self) -> &PublicKey {
            self.successors.last().map_or(&self.first, |(_, key)| key)
        }

        /// Whether `key` is one of them.
        pub fn holds(&self, key: &PublicKey) -> bool {
            self.first == *key || self.successors.iter().any(|(_, k)| k == key)
        }
    }

    /// Where the rotations lead from `pinned`: the newest key reached by following records each
    /// signed by the key before it, starting at `pinned` (a workstation's pin). `pinned` itself
    /// when no record starts there.
    pub fn follow(pinned: &PublicKey, rotations: &[KeyRotation]) -> PublicKey {
        let mut key = *pinned;
        for rotation in rotations {
            match rotation.checked() {
                Some((old, new)) if old == key => key = new,
                _ => {}
            }
        }
        key
    }
}

#[cfg(all(test, feature = "signatures"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::audit::to_hex;
    use crate::signature::PublicKey;

    fn key(seed: u8) -> (SigningKey, PublicKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let public = PublicKey::from_bytes(signing.verifying_key().as_bytes()).unwrap();
        (signing, public)
    }

    fn rotate(old: &(SigningKey, PublicKey), new: &PublicKey, at_ms: i64) -> KeyRotation {
        let bytes = KeyRotation::signed_bytes(&old.1, new, at_ms);
        KeyRotation {
            old_key: old.1.to_hex(),
            new_key: new.to_hex(),
            at_ms,
            signature: to_hex(&old.0.sign(&bytes).to_bytes()),
        }
    }

    #[test]
    fn each_key_signs_its_own_period() {
        let (a, b, c) = (key(1), key(2), key(3));
        let rotations = [rotate(&a, &b.1, 100), rotate(&b, &c.1, 200)];
        let keys = ServerKeys::from_rotations(c.1, &rotations).unwrap();
        assert_eq!(*keys.at(99), a.1);
        assert_eq!(*keys.at(100), b.1);
        assert_eq!(*keys.at(199), b.1);
        assert_eq!(*keys.at(200), c.1);
        assert_eq!(*keys.current(), c.1);
        assert!(keys.holds(&a.1) && !keys.holds(&key(4).1));
        assert_eq!(follow(&a.1, &rotations), c.1);
        assert_eq!(follow(&b.1, &rotations), c.1);
        // A pin the records never started from stays where it is.
        assert_eq!(follow(&key(4).1, &rotations), key(4).1);
    }

    #[test]
    fn a_record_not_signed_by_the_key_before_it_is_refused() {
        let (a, b, c) = (key(1), key(2), key(3));
        // Signed by the new key rather than the old one: a thief of `c` cannot vouch for it.
        let mut forged = rotate(&c, &c.1, 100);
        forged.old_key = a.1.to_hex();
        assert_eq!(
            ServerKeys::from_rotations(c.1, &[forged.clone()]),
            Err(RotationError::BadSignature(0))
        );
        assert_eq!(follow(&a.1, &[forged]), a.1);
        // Records out of order, broken or ending elsewhere.
        let ab = rotate(&a, &b.1, 200);
        assert_eq!(
            ServerKeys::from_rotations(c.1, &[ab.clone(), rotate(&b, &c.1, 200)]),
            Err(RotationError::OutOfOrder(1))
        );
        assert_eq!(
            ServerKeys::from_rotations(c.1, &[ab.clone(), rotate(&a, &c.1, 300)]),
            Err(RotationError::Broken(1))
        );
        assert_eq!(
            ServerKeys::from_rotations(c.1, &[ab]),
            Err(RotationError::WrongEnd)
        );
    }
}
