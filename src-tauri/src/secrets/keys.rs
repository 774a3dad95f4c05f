//! Key hierarchy of a workstation.
//!
//! - The **device secret** (256 random bits) lives only in the OS keychain. Deleting it
//!   crypto-shreds every cache and the outbox on the device at once.
//! - The **device key** (Ed25519, signs login proofs and audit events) is stored on disk
//!   wrapped under a key derived from the device secret: usable only with the keychain,
//!   and back with it when an escrowed device secret is restored.
//! - The **outbox key** is derived from the device secret alone (HKDF-SHA256), so audit
//!   events keep uploading while the app is locked.
//! - Each user's **cache key** is random and stored only wrapped (XChaCha20-Poly1305)
//!   under a key-encryption key derived from *both* the device secret and the user's
//!   password (argon2id, OWASP parameters): the disk without the keychain opens nothing,
//!   and the OS session without the user's password opens nothing either.

use argon2::{Algorithm, Argon2, Params, Version};
use clinicdesk_protocol::audit::{from_hex, to_hex};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::keychain::{Keychain, KeychainError, random_key};
use super::sealed::{SealError, Sealed};

/// Keychain entry name of the device secret.
pub const DEVICE_SECRET: &str = "device-secret";

/// OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane).
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("password does not unwrap this key")]
    WrongPassword,
    #[error("wrapped key malformed")]
    Malformed,
    #[error("key derivation failed")]
    Kdf,
    #[error(transparent)]
    Keychain(#[from] KeychainError),
}

/// The device secret, zeroized on drop. No `Debug`, no `Clone`.
pub struct DeviceSecret(Zeroizing<[u8; 32]>);

impl DeviceSecret {
    /// Creates a fresh secret and stores it in the keychain.
    pub fn create(keychain: &Keychain) -> Result<Self, KeyError> {
        let secret = random_key()?;
        keychain.store_key(DEVICE_SECRET, &secret)?;
        Ok(Self(secret))
    }

    /// A secret from raw bytes, for benchmarks that run without a keychain.
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// Puts an escrowed copy the server released back into the keychain.
    pub fn restore(keychain: &Keychain, bytes: Zeroizing<[u8; 32]>) -> Result<Self, KeyError> {
        keychain.store_key(DEVICE_SECRET, &bytes)?;
        Ok(Self(bytes))
    }

    /// The secret as hex, for the escrow copy sent once, at enrollment, to the pinned server.
    pub fn escrow_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(to_hex(self.0.as_slice()))
    }

    /// The key that wraps the device's signing key on disk.
    pub fn device_key_wrap_key(&self) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.derive(b"", &[b"clinicdesk/device-key-wrap/v1"])
    }

    pub fn load(keychain: &Keychain) -> Result<Self, KeyError> {
        Ok(Self(keychain.load_key(DEVICE_SECRET)?))
    }

    /// A 256-bit key for one purpose, from the device secret and `ikm`.
    fn derive(&self, ikm: &[u8], info: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let hk = Hkdf::<Sha256>::new(Some(self.0.as_slice()), ikm);
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand_multi_info(info, out.as_mut_slice())
            .map_err(|_| KeyError::Kdf)?;
        Ok(out)
    }

    /// The outbox's SQLCipher key.
    pub fn outbox_key(&self) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.derive(b"", &[b"clinicdesk/outbox-key/v1"])
    }

    /// A keyed tag of a username, so the device can find a user's cache for an offline
    /// unlock without writing staff usernames to disk.
    pub fn username_tag(&self, username: &str) -> Result<String, KeyError> {
        let normalized = username.trim().to_lowercase();
        let tag = self.derive(normalized.as_bytes(), &[b"clinicdesk/username-tag/v1"])?;
        Ok(to_hex(tag.as_slice()))
    }

    /// The key that wraps the recovery key on disk while the keychain has the secret.
    pub fn recovery_key_wrap_key(&self) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.derive(b"", &[b"clinicdesk/recovery-key-wrap/v1"])
    }

    fn kek(
        &self,
        password: &str,
        salt: &[u8],
        user_id: Uuid,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let stretched = stretch_password(password, salt)?;
        self.derive(
            stretched.as_slice(),
            &[b"clinicdesk/cache-kek/v1", user_id.as_bytes()],
        )
    }
}

/// argon2id of a password with OWASP's parameters: the slow step of every key a password
/// takes part in.
pub fn stretch_password(password: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let params =
        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32)).map_err(|_| KeyError::Kdf)?;
    let mut stretched = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, stretched.as_mut_slice())
        .map_err(|_| KeyError::Kdf)?;
    Ok(stretched)
}

/// A user's cache key as stored on disk: only ever encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKey {
    pub user_id: Uuid,
    /// [`DeviceSecret::username_tag`] of the user's username.
    pub username_tag: String,
    pub argon2_m_kib: u32,
    pub argon2_t: u32,
    pub argon2_p: u32,
    pub salt: String,
    /// `version`, `nonce` and `ciphertext`, at the top level of `key.json`.
    #[serde(flatten)]
    pub sealed: Sealed,
}

fn aad(user_id: Uuid) -> Vec<u8> {
    let mut aad = b"clinicdesk/cache-key/v1\0".to_vec();
    aad.extend_from_slice(user_id.as_bytes());
    aad
}

impl WrappedKey {
    /// Wraps `cache_key` for `user_id` under the device secret and `password`.
    pub fn wrap(
        secret: &DeviceSecret,
        user_id: Uuid,
        username: &str,
        password: &str,
        cache_key: &Zeroizing<[u8; 32]>,
    ) -> Result<Self, KeyError> {
        let salt = random_key()?;
        let kek = secret.kek(password, &salt[..16], user_id)?;
        let sealed = Sealed::seal(&kek, &aad(user_id), cache_key).map_err(|_| KeyError::Kdf)?;
        Ok(Self {
            user_id,
            username_tag: secret.username_tag(username)?,
            argon2_m_kib: ARGON2_M_KIB,
            argon2_t: ARGON2_T,
            argon2_p: ARGON2_P,
            salt: to_hex(&salt[..16]),
            sealed,
        })
    }

    /// The cache key, or [`KeyError::WrongPassword`] when the password (or the device
    /// secret) is not the one it was wrapped under.
    pub fn unwrap(
        &self,
        secret: &DeviceSecret,
        password: &str,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if (self.argon2_m_kib, self.argon2_t, self.argon2_p) != (ARGON2_M_KIB, ARGON2_T, ARGON2_P) {
            return Err(KeyError::Malformed);
        }
        let salt = from_hex(&self.salt).ok_or(KeyError::Malformed)?;
        let kek = secret.kek(password, &salt, self.user_id)?;
        self.sealed
            .open(&kek, &aad(self.user_id))
            .map_err(|e| match e {
                SealError::WrongKey => KeyError::WrongPassword,
                SealError::Malformed | SealError::Random => KeyError::Malformed,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> DeviceSecret {
        DeviceSecret(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn a_wrapped_key_opens_only_with_the_same_password_and_device_secret() {
        let user = Uuid::from_u128(7);
        let key = random_key().unwrap();
        let wrapped = WrappedKey::wrap(&secret(1), user, "alice", "correct horse", &key).unwrap();
        assert_eq!(*wrapped.unwrap(&secret(1), "correct horse").unwrap(), *key);
        assert!(matches!(
            wrapped.unwrap(&secret(1), "wrong horse"),
            Err(KeyError::WrongPassword)
        ));
        assert!(matches!(
            wrapped.unwrap(&secret(2), "correct horse"),
            Err(KeyError::WrongPassword)
        ));
        // Bound to the user: the same blob relabelled for another user does not open.
        let mut moved = wrapped.clone();
        moved.user_id = Uuid::from_u128(8);
        assert!(moved.unwrap(&secret(1), "correct horse").is_err());
        let on_disk = serde_json::to_string(&wrapped).unwrap();
        assert!(!on_disk.contains(&to_hex(key.as_slice())));
        assert!(!on_disk.contains("alice"));
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_device() {
        assert_ne!(
            *secret(1).outbox_key().unwrap(),
            *secret(2).outbox_key().unwrap()
        );
        assert_eq!(
            secret(1).username_tag(" Alice ").unwrap(),
            secret(1).username_tag("alice").unwrap()
        );
        assert_ne!(
            secret(1).username_tag("alice").unwrap(),
            secret(2).username_tag("alice").unwrap()
        );
    }
}
