//! The workstation's recovery key: an Ed25519 key whose only power is to ask the server,
//! together with a user's password and a fresh second factor, for the escrowed device
//! secret after the keychain lost it ([`crate::core`]'s recovery). Revoking the device
//! destroys the escrow on the server, and with it that power.
//!
//! It is never on disk in the clear. `recovery-key.json` holds it sealed under the device
//! secret, for the days the keychain is fine; and each user who signed in online here has a
//! copy in their folder sealed under a key from their password alone (argon2id), which is
//! what opens it once the keychain lost the secret. Such a copy lets a stolen disk be used
//! for guessing that password offline, at argon2id's cost, as any password-wrapped key
//! does: the server's password rules (12 characters or more, no breached or common
//! password) are the defence. A copy goes with the user's cache when they sign out; with
//! nobody's copy left, the workstation is enrolled again instead.

use std::path::{Path, PathBuf};

use clinicdesk_protocol::audit::{from_hex, to_hex};
use ed25519_dalek::{Signer, SigningKey};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::keychain::random_key;
use super::keys::{ARGON2_M_KIB, ARGON2_P, ARGON2_T, DeviceSecret, stretch_password};
use super::sealed::{SealError, Sealed};
use crate::config::Paths;
use crate::error::AppError;
use crate::files::{read_json, write_private};

const FILE: &str = "recovery-key.json";
const FILE_AAD: &[u8] = b"clinicdesk/recovery-key/v1";

/// The recovery key. `SigningKey` zeroizes itself on drop; no `Debug`, no `Clone`.
pub struct RecoveryKey(SigningKey);

/// `recovery-key.json`: sealed, or the plain seed an earlier version wrote (resealed on
/// first sight).
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Sealed(Sealed),
    Plain(PlainSeed),
}

#[derive(Deserialize, zeroize::ZeroizeOnDrop)]
struct PlainSeed {
    seed: String,
}

impl RecoveryKey {
    /// Creates a key and stores it sealed under the device secret.
    pub fn create(paths: &Paths, secret: &DeviceSecret) -> Result<Self, AppError> {
        let seed = random_key()?;
        let key = Self(SigningKey::from_bytes(&seed));
        key.store(paths, secret)?;
        Ok(key)
    }

    fn store(&self, paths: &Paths, secret: &DeviceSecret) -> Result<(), AppError> {
        let sealed = Sealed::seal(&*file_key(secret)?, FILE_AAD, self.0.as_bytes())
            .map_err(|_| AppError::Internal("recovery key seal"))?;
        let json = serde_json::to_vec(&sealed).map_err(|_| AppError::Internal("json"))?;
        write_private(&paths.recovery_key, &json)
    }

    /// The recovery key, opened with the device secret; `None` when this install has none
    /// (enrolled before recovery keys existed). A plain seed left by an earlier version is
    /// sealed in place.
    pub fn load(paths: &Paths, secret: &DeviceSecret) -> Result<Option<Self>, AppError> {
        let malformed = || AppError::Config(FILE);
        match read_json::<Stored>(&paths.recovery_key, FILE)? {
            None => Ok(None),
            Some(Stored::Sealed(sealed)) => {
                let seed = sealed
                    .open(&*file_key(secret)?, FILE_AAD)
                    .map_err(|_| malformed())?;
                Ok(Some(Self(SigningKey::from_bytes(&seed))))
            }
            Some(Stored::Plain(plain)) => {
                let bytes = Zeroizing::new(
                    from_hex(&plain.seed)
                        .filter(|b| b.len() == 32)
                        .ok_or_else(malformed)?,
                );
                let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| malformed())?;
                let key = Self(SigningKey::from_bytes(seed));
                key.store(paths, secret)?;
                tracing::info!("plain recovery key sealed under the device secret");
                Ok(Some(key))
            }
        }
    }

    /// Writes a copy for `user_id` that `password` alone opens (the keychain plays no part).
    pub fn store_user_copy(
        &self,
        path: &Path,
        user_id: Uuid,
        password: &str,
    ) -> Result<(), AppError> {
        let salt = random_key()?;
        let salt = &salt[..16];
        let key = user_copy_key(password, salt, user_id)?;
        let copy = UserCopy {
            version: 1,
            user_id,
            argon2_m_kib: ARGON2_M_KIB,
            argon2_t: ARGON2_T,
            argon2_p: ARGON2_P,
            salt: to_hex(salt),
            sealed: Sealed::seal(&key, &user_copy_aad(user_id), self.0.as_bytes())
                .map_err(|_| AppError::Internal("recovery key seal"))?,
        };
        let json = serde_json::to_vec(&copy).map_err(|_| AppError::Internal("json"))?;
        write_private(path, &json)
    }

    pub fn public_key_hex(&self) -> String {
        to_hex(self.0.verifying_key().as_bytes())
    }

    pub fn sign_hex(&self, message: &[u8]) -> String {
        to_hex(&self.0.sign(message).to_bytes())
    }
}

fn file_key(secret: &DeviceSecret) -> Result<Zeroizing<[u8; 32]>, AppError> {
    secret
        .recovery_key_wrap_key()
        .map_err(|_| AppError::Internal("recovery key wrap key"))
}

/// One user's copy of the recovery key, as stored in their folder.
#[derive(Serialize, Deserialize)]
struct UserCopy {
    version: u32,
    user_id: Uuid,
    argon2_m_kib: u32,
    argon2_t: u32,
    argon2_p: u32,
    salt: String,
    sealed: Sealed,
}

fn user_copy_aad(user_id: Uuid) -> Vec<u8> {
    let mut aad = b"clinicdesk/recovery-key/user/v1\0".to_vec();
    aad.extend_from_slice(user_id.as_bytes());
    aad
}

fn user_copy_key(
    password: &str,
    salt: &[u8],
    user_id: Uuid,
) -> Result<Zeroizing<[u8; 32]>, AppError> {
    let stretched =
        stretch_password(password, salt).map_err(|_| AppError::Internal("key derivation"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, stretched.as_slice())
        .expand_multi_info(
            &[b"clinicdesk/recovery-copy-kek/v1", user_id.as_bytes()],
            key.as_mut_slice(),
        )
        .map_err(|_| AppError::Internal("key derivation"))?;
    Ok(key)
}

impl UserCopy {
    fn open(&self, password: &str) -> Result<Option<RecoveryKey>, AppError> {
        let malformed = || AppError::Config(FILE);
        if self.version != 1
            || (self.argon2_m_kib, self.argon2_t, self.argon2_p)
                != (ARGON2_M_KIB, ARGON2_T, ARGON2_P)
        {
            return Err(malformed());
        }
        let salt = from_hex(&self.salt).ok_or_else(malformed)?;
        let key = user_copy_key(password, &salt, self.user_id)?;
        match self.sealed.open(&key, &user_copy_aad(self.user_id)) {
            Ok(seed) => Ok(Some(RecoveryKey(SigningKey::from_bytes(&seed)))),
            Err(SealError::WrongKey) => Ok(None),
            Err(_) => Err(malformed()),
        }
    }
}

/// What the users' copies on this workstation say to a password.
pub enum Found {
    /// Nobody signed in online here since recovery keys existed (or all signed out).
    NoCopies,
    /// The password opens none of them.
    NoneOpened,
    Opened(Box<RecoveryKey>),
}

/// Tries `password` on each user's copy (an argon2id each: a workstation has a handful of
/// users). Usernames are not on disk, so the password itself finds its copy. A copy that
/// cannot be read is skipped, so one damaged folder does not block everyone else.
pub fn open_user_copy(copies: &[PathBuf], password: &str) -> Result<Found, AppError> {
    let mut seen = false;
    for path in copies {
        let copy = match read_json::<UserCopy>(path, FILE) {
            Ok(Some(copy)) => copy,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(code = %e.to_api().code, "unreadable recovery copy skipped");
                continue;
            }
        };
        seen = true;
        match copy.open(password) {
            Ok(Some(key)) => return Ok(Found::Opened(Box::new(key))),
            Ok(None) => {}
            Err(e) => tracing::warn!(code = %e.to_api().code, "malformed recovery copy skipped"),
        }
    }
    Ok(if seen {
        Found::NoneOpened
    } else {
        Found::NoCopies
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> DeviceSecret {
        DeviceSecret::from_bytes(Zeroizing::new([byte; 32]))
    }

    fn seed_hex(key: &RecoveryKey) -> String {
        to_hex(key.0.as_bytes())
    }

    #[test]
    fn the_file_opens_only_with_the_device_secret_and_never_holds_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        assert!(RecoveryKey::load(&paths, &secret(1)).unwrap().is_none());
        let key = RecoveryKey::create(&paths, &secret(1)).unwrap();
        let again = RecoveryKey::load(&paths, &secret(1)).unwrap().unwrap();
        assert_eq!(again.public_key_hex(), key.public_key_hex());
        assert!(matches!(
            RecoveryKey::load(&paths, &secret(2)),
            Err(AppError::Config(FILE))
        ));
        let on_disk = std::fs::read_to_string(&paths.recovery_key).unwrap();
        assert!(!on_disk.contains(&seed_hex(&key)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.recovery_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_plain_seed_from_an_earlier_version_is_sealed_on_first_load() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let seed = to_hex(&[5u8; 32]);
        std::fs::write(&paths.recovery_key, format!("{{\"seed\":\"{seed}\"}}")).unwrap();
        let key = RecoveryKey::load(&paths, &secret(1)).unwrap().unwrap();
        assert_eq!(seed_hex(&key), seed);
        let on_disk = std::fs::read_to_string(&paths.recovery_key).unwrap();
        assert!(!on_disk.contains(&seed), "the plain seed is still on disk");
        let again = RecoveryKey::load(&paths, &secret(1)).unwrap().unwrap();
        assert_eq!(again.public_key_hex(), key.public_key_hex());
    }

    #[test]
    fn a_users_copy_opens_with_their_password_alone() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::under(dir.path());
        let key = RecoveryKey::create(&paths, &secret(1)).unwrap();
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let copies = vec![
            dir.path().join("alice.json"),
            dir.path().join("bob.json"),
            dir.path().join("nobody.json"),
        ];
        assert!(matches!(
            open_user_copy(&copies, "alice password").unwrap(),
            Found::NoCopies
        ));
        key.store_user_copy(&copies[0], alice, "alice password")
            .unwrap();
        key.store_user_copy(&copies[1], bob, "bob password")
            .unwrap();
        for password in ["alice password", "bob password"] {
            let Found::Opened(opened) = open_user_copy(&copies, password).unwrap() else {
                panic!("a user's own password did not open their copy");
            };
            assert_eq!(opened.public_key_hex(), key.public_key_hex());
        }
        assert!(matches!(
            open_user_copy(&copies, "wrong password").unwrap(),
            Found::NoneOpened
        ));
        // Bound to its user: alice's copy relabelled as bob's does not open.
        let mut moved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&copies[0]).unwrap()).unwrap();
        moved["user_id"] = serde_json::json!(bob);
        std::fs::write(&copies[0], moved.to_string()).unwrap();
        assert!(matches!(
            open_user_copy(&copies[..1], "alice password").unwrap(),
            Found::NoneOpened
        ));
        let on_disk = std::fs::read_to_string(&copies[1]).unwrap();
        assert!(!on_disk.contains(&seed_hex(&key)));
    }
}
