//! The per-user caches on this workstation: `users/<user id>/cache.sqlite3` (SQLCipher),
//! `users/<user id>/key.json` (the cache key, wrapped under the device secret and the
//! user's password) and `users/<user id>/recovery-key.json` (the workstation's recovery
//! key, sealed under the user's password: [`crate::secrets::recovery_key`]). A colleague on the same OS account has neither the password
//! nor a way around it; a copied disk lacks the device secret.

use std::path::{Path, PathBuf};

use clinicdesk_protocol::wire::UserInfo;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::cache::Cache;
use super::db;
use crate::error::AppError;
use crate::files::{read_json, write_json};
use crate::secrets::keychain::random_key;
use crate::secrets::keys::{DeviceSecret, KeyError, WrappedKey};

const KEY_FILE: &str = "key.json";
const CACHE_FILE: &str = "cache.sqlite3";
const RECOVERY_FILE: &str = "recovery-key.json";

#[derive(Debug, Clone)]
pub struct UserCaches {
    dir: PathBuf,
}

impl UserCaches {
    pub fn under(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("users"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn user_dir(&self, user_id: Uuid) -> PathBuf {
        self.dir.join(user_id.to_string())
    }

    /// The cache database of a user (for tests that inspect the file).
    pub fn cache_path(&self, user_id: Uuid) -> PathBuf {
        self.user_dir(user_id).join(CACHE_FILE)
    }

    /// Where the user's copy of the recovery key is kept.
    pub fn recovery_copy_path(&self, user_id: Uuid) -> PathBuf {
        self.user_dir(user_id).join(RECOVERY_FILE)
    }

    /// Every user's copy of the recovery key on this workstation.
    pub fn recovery_copies(&self) -> Result<Vec<PathBuf>, AppError> {
        self.each_users(RECOVERY_FILE)
    }

    /// The wrapped key of the user with this username, if they have a cache here.
    pub fn find(
        &self,
        secret: &DeviceSecret,
        username: &str,
    ) -> Result<Option<WrappedKey>, AppError> {
        let tag = secret.username_tag(username).map_err(key_error)?;
        for path in self.each_users(KEY_FILE)? {
            if let Some(wrapped) = read_json::<WrappedKey>(&path, "key.json")?
                && wrapped.username_tag == tag
            {
                return Ok(Some(wrapped));
            }
        }
        Ok(None)
    }

    /// The file `name` of every user folder that has one.
    fn each_users(&self, name: &str) -> Result<Vec<PathBuf>, AppError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AppError::Io("users dir", e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| AppError::Io("users dir", e))?
                .path()
                .join(name);
            if path.exists() {
                files.push(path);
            }
        }
        Ok(files)
    }

    pub fn load(&self, user_id: Uuid) -> Result<Option<WrappedKey>, AppError> {
        read_json(&self.user_dir(user_id).join(KEY_FILE), "key.json")
    }

    /// Unwraps the user's cache key with `password` and opens the cache.
    /// A wrong password is `Ok(None)`.
    pub fn open(
        &self,
        secret: &DeviceSecret,
        wrapped: &WrappedKey,
        password: &str,
    ) -> Result<Option<Cache>, AppError> {
        let key = match wrapped.unwrap(secret, password) {
            Ok(key) => key,
            Err(KeyError::WrongPassword) => return Ok(None),
            Err(e) => return Err(key_error(e)),
        };
        Ok(Some(Cache::open(&self.cache_path(wrapped.user_id), &key)?))
    }

    /// A new, empty cache for `user` under a fresh random key, replacing any old one.
    pub fn create(
        &self,
        secret: &DeviceSecret,
        user: &UserInfo,
        password: &str,
    ) -> Result<Cache, AppError> {
        self.remove(user.user_id)?;
        let key = random_key()?;
        let wrapped = WrappedKey::wrap(secret, user.user_id, &user.username, password, &key)
            .map_err(key_error)?;
        write_json(&self.user_dir(user.user_id).join(KEY_FILE), &wrapped)?;
        Ok(Cache::open(&self.cache_path(user.user_id), &key)?)
    }

    /// The user's cache key, unwrapped with `password` ([`AppError::WrongPassword`] if it
    /// does not open it).
    pub fn unwrap_key(
        &self,
        secret: &DeviceSecret,
        user_id: Uuid,
        password: &str,
    ) -> Result<Zeroizing<[u8; 32]>, AppError> {
        let wrapped = self
            .load(user_id)?
            .ok_or(AppError::Internal("no cache key for the user"))?;
        wrapped.unwrap(secret, password).map_err(key_error)
    }

    /// Stores the user's cache key wrapped under a new password (the cache is unchanged).
    /// Written whole or not at all: a crash leaves the old wrapping or the new one.
    pub fn rewrap_key(
        &self,
        secret: &DeviceSecret,
        user: &UserInfo,
        password: &str,
        key: &Zeroizing<[u8; 32]>,
    ) -> Result<(), AppError> {
        let wrapped = WrappedKey::wrap(secret, user.user_id, &user.username, password, key)
            .map_err(key_error)?;
        write_json(&self.user_dir(user.user_id).join(KEY_FILE), &wrapped)
    }

    /// Deletes a user's cache and wrapped key from this device.
    pub fn remove(&self, user_id: Uuid) -> Result<(), AppError> {
        let dir = self.user_dir(user_id);
        db::remove_files(&dir.join(CACHE_FILE)).map_err(|e| AppError::Io("user cache", e))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AppError::Io("user cache", e)),
        }
    }

    /// Deletes every user's cache (device wipe).
    pub fn remove_all(&self) -> Result<(), AppError> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AppError::Io("users dir", e)),
        }
    }
}

fn key_error(e: KeyError) -> AppError {
    match e {
        KeyError::Keychain(k) => AppError::Keychain(k),
        KeyError::WrongPassword => AppError::WrongPassword,
        KeyError::Malformed => AppError::Config("key.json"),
        KeyError::Kdf => AppError::Internal("key derivation"),
    }
}
