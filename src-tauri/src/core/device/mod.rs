//! The device part of the core: what this workstation is and keeps whoever is signed in.
//! Its enrollment and the client pinned to the server's CA, the keychain's device secret
//! (and what the keychain last said about it), the audit outbox, the contact with the
//! server, enrolling ([`enroll`]), the wipe after a revocation, and uploading the outbox
//! ([`upload`]), which needs no user session and so goes on while the app is locked.
//!
//! All of it sits behind one lock, second in the core's lock order (the session's lock
//! comes first). The order is a rule of the types:
//!
//! - The device's lock is private to this folder. Elsewhere it is held only as a
//!   [`DeviceGuard`], which only [`SessionHeld::device`] gives out, and a [`SessionHeld`]
//!   is built only by [`Device::under`] from a held session guard, which stays borrowed
//!   while the proof lives. So wherever a `DeviceGuard` exists outside this folder, the
//!   session's lock was taken first and is still held.
//! - Here the device's lock is taken alone, inside [`Device`]'s own methods, which return
//!   with it released and cannot reach the session's lock: `Device` has no path to it, no
//!   method takes the session but `under` (which only hands the held guard back), and none
//!   runs a caller's closure while holding the lock.
//!
//! Must not name the session's state beyond `under`; see `core/mod.rs` for what the core
//! may import.

mod enroll;
mod upload;

use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use clinicdesk_protocol::app::Revocation;
use clinicdesk_protocol::wire::UserInfo;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::session::{SessionGuard, SessionState};
use crate::config::Paths;
use crate::error::AppError;
use crate::files::write_json;
use crate::local::outbox::{Draft, Outbox, Signer};
use crate::local::users::UserCaches;
use crate::net::client::ServerClient;
use crate::net::enrollment::{self, Enrollment};
use crate::secrets::device_key::DeviceKey;
use crate::secrets::keychain::{Keychain, KeychainError};
use crate::secrets::keys::{DeviceSecret, KeyError};

pub(super) struct Device {
    paths: Paths,
    users: UserCaches,
    keychain: Keychain,
    state: Mutex<DeviceState>,
    /// Woken when something was added to the outbox (or a session opened or ended).
    upload_wanted: tokio::sync::Notify,
}

struct DeviceState {
    enrolled: Option<Enrolled>,
    outbox: Option<Outbox>,
    /// What the keychain said the last time the device secret was asked for.
    keychain: KeychainState,
    /// `Some` once the server revoked this device and it wiped itself: what it handed in
    /// first (`revoked.json`).
    revoked: Option<Revocation>,
    net: Net,
}

struct Enrolled {
    enrollment: Enrollment,
    client: ServerClient,
}

#[derive(Default)]
struct Net {
    online: Option<bool>,
    last_upload_ms: Option<i64>,
    /// The server head the outbox was last re-chained onto after a fork: a second fork
    /// at the same head is not re-chained again (no loop).
    rebased_onto: Option<u64>,
}

/// The keychain's answer to the last request for the device secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeychainState {
    Fine,
    /// Locked or unreachable: retrying may work.
    Unavailable,
    /// The entry is gone: only the escrowed copy brings it back.
    SecretMissing,
}

/// What the status screen shows of the device part.
pub(super) struct DeviceStatus {
    pub enrollment: Option<Enrollment>,
    pub keychain: KeychainState,
    pub revoked: Option<Revocation>,
    pub online: Option<bool>,
    pub last_upload_ms: Option<i64>,
    pub outbox_pending: Option<u64>,
}

/// Proof that the session's lock is held: only [`Device::under`] builds one, from a held
/// session guard it keeps borrowed. With it, and only with it, code outside this folder
/// takes the device's lock, which is then always the second.
pub(super) struct SessionHeld<'g> {
    device: &'g Device,
    _guard: PhantomData<&'g mut SessionState>,
}

/// The device state, locked. Outside this folder it exists only under a held session lock.
pub(super) struct DeviceGuard<'a> {
    device: &'a Device,
    state: MutexGuard<'a, DeviceState>,
}

/// A keychain failure as the app reports it.
fn key_error(e: KeyError) -> AppError {
    match e {
        KeyError::Keychain(k) => AppError::Keychain(k),
        _ => AppError::Internal("device secret"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Install {
    install_id: Uuid,
}

/// The installation id that names this install's keychain entries, created on first run.
fn install_id(paths: &Paths) -> Result<Uuid, AppError> {
    match std::fs::read(&paths.install) {
        Ok(bytes) => serde_json::from_slice::<Install>(&bytes)
            .map(|i| i.install_id)
            .map_err(|_| AppError::Config("install.json")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let install = Install {
                install_id: Uuid::new_v4(),
            };
            write_json(&paths.install, &install)?;
            Ok(install.install_id)
        }
        Err(e) => Err(AppError::Io("install.json", e)),
    }
}

/// What `revoked.json` says of the revocation (`None`: not revoked). A file written before
/// the app handed in its outbox at revocation says nothing of it: zeros.
fn revocation_of(paths: &Paths) -> Option<Revocation> {
    let bytes = std::fs::read(&paths.revoked).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap_or_default())
}

impl Device {
    /// The device as its files under `data_dir` describe it: enrolled or not, revoked or not.
    /// The outbox opens later ([`Device::ensure_outbox`]): that needs the keychain.
    pub(super) fn open(data_dir: &Path, keychain_service: &str) -> Result<Self, AppError> {
        let paths = Paths::under(data_dir);
        let users = UserCaches::under(data_dir);
        let install_id = install_id(&paths)?;
        let keychain = Keychain::new(keychain_service, &install_id.to_string());
        let enrolled = match enrollment::load_enrollment(&paths)? {
            Some(enrollment) => {
                let ca = std::fs::read(&paths.pinned_ca)
                    .map_err(|e| AppError::Io("server-ca.pem", e))?;
                let client = ServerClient::new(&enrollment.server_url, &ca)?;
                Some(Enrolled { enrollment, client })
            }
            None => None,
        };
        let revoked = revocation_of(&paths);
        Ok(Self {
            paths,
            users,
            keychain,
            state: Mutex::new(DeviceState {
                enrolled,
                outbox: None,
                keychain: KeychainState::Fine,
                revoked,
                net: Net::default(),
            }),
            upload_wanted: tokio::sync::Notify::new(),
        })
    }

    /// The device's lock, taken alone: for this folder only (see the module's doc).
    fn lock(&self) -> MutexGuard<'_, DeviceState> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session state behind `held`, and the proof that lets the session's code take the
    /// device's lock while it holds its own. Both borrow `held`, so the session's lock
    /// outlives every device guard taken with the proof.
    pub(super) fn under<'g>(
        &'g self,
        held: &'g mut SessionGuard<'_>,
    ) -> (&'g mut SessionState, SessionHeld<'g>) {
        let proof = SessionHeld {
            device: self,
            _guard: PhantomData,
        };
        (&mut **held, proof)
    }

    pub(super) fn keychain(&self) -> &Keychain {
        &self.keychain
    }

    pub(super) fn paths(&self) -> &Paths {
        &self.paths
    }

    pub(super) fn users(&self) -> &UserCaches {
        &self.users
    }

    pub(super) fn is_enrolled(&self) -> bool {
        self.lock().enrolled.is_some()
    }

    pub(super) fn enrolled(&self) -> Result<(Enrollment, ServerClient), AppError> {
        self.lock()
            .enrolled
            .as_ref()
            .map(|e| (e.enrollment.clone(), e.client.clone()))
            .ok_or(AppError::NotEnrolled)
    }

    pub(super) fn device_id(&self) -> Result<Uuid, AppError> {
        self.lock().device_id()
    }

    /// Remembers whether the server answered (`Unreachable`, and an answer from something
    /// the pinned CA does not vouch for, are the only "no"s).
    pub(super) fn note_network<T>(&self, result: &Result<T, AppError>) {
        let reached = !matches!(result, Err(AppError::Unreachable | AppError::NotTrusted));
        self.lock().net.online = Some(reached);
    }

    /// Loads the device secret from the keychain, remembering in `state` whether it could.
    fn load_secret(&self, state: &mut DeviceState) -> Result<DeviceSecret, AppError> {
        let secret = DeviceSecret::load(&self.keychain).map_err(key_error);
        state.keychain = match &secret {
            Ok(_) => KeychainState::Fine,
            Err(AppError::Keychain(KeychainError::Missing)) => KeychainState::SecretMissing,
            Err(_) => KeychainState::Unavailable,
        };
        secret
    }

    /// Loads the device secret from the keychain (remembering whether it could) and runs
    /// `f` with it, without the device lock; the secret is zeroized when `f` returns.
    pub(super) fn with_device_secret<R>(
        &self,
        f: impl FnOnce(&DeviceSecret) -> Result<R, AppError>,
    ) -> Result<R, AppError> {
        let secret = self.load_secret(&mut self.lock());
        f(&secret?)
    }

    /// The device key, unwrapped with the device secret from the keychain.
    pub(super) fn device_key(&self) -> Result<DeviceKey, AppError> {
        self.with_device_secret(|secret| DeviceKey::load(&self.paths, secret))
    }

    /// Opens the device's outbox if it is not open yet. The lock is held from the check to
    /// the open, so a wipe or an enrollment in between cannot leave an outbox keyed with a
    /// secret that is gone.
    pub(super) fn ensure_outbox(&self) -> Result<(), AppError> {
        let mut state = self.lock();
        if state.outbox.is_none() {
            let secret = self.load_secret(&mut state)?;
            let key = secret
                .outbox_key()
                .map_err(|_| AppError::Internal("outbox key"))?;
            state.outbox = Some(Outbox::open(&self.paths.outbox, &key)?);
        }
        Ok(())
    }

    /// Wakes the uploader: something was added to the outbox.
    pub(super) fn want_upload(&self) {
        self.upload_wanted.notify_one();
    }

    /// Resolves when [`Device::want_upload`] was called.
    pub(super) async fn upload_wanted(&self) {
        self.upload_wanted.notified().await;
    }
}

impl DeviceState {
    fn device_id(&self) -> Result<Uuid, AppError> {
        self.enrolled
            .as_ref()
            .map(|e| e.enrollment.device_id)
            .ok_or(AppError::NotEnrolled)
    }
}

impl SessionHeld<'_> {
    /// Takes the device's lock, second after the session's.
    pub(super) fn device(&mut self) -> DeviceGuard<'_> {
        DeviceGuard {
            device: self.device,
            state: self.device.lock(),
        }
    }
}

impl DeviceGuard<'_> {
    pub(super) fn status(&self) -> DeviceStatus {
        let state = &self.state;
        DeviceStatus {
            enrollment: state.enrolled.as_ref().map(|e| e.enrollment.clone()),
            keychain: state.keychain,
            revoked: state.revoked,
            online: state.net.online,
            last_upload_ms: state.net.last_upload_ms,
            outbox_pending: state.outbox.as_ref().and_then(|o| o.count().ok()),
        }
    }

    pub(super) fn device_id(&self) -> Result<Uuid, AppError> {
        self.state.device_id()
    }

    /// Signs `draft` with the device key for `user` and commits it to the outbox.
    pub(super) fn record(
        &mut self,
        key: &DeviceKey,
        user: &UserInfo,
        draft: Draft,
        now: i64,
    ) -> Result<(), AppError> {
        self.record_all(key, user, vec![draft], now)
    }

    /// [`DeviceGuard::record`] for several events, in one transaction: all or none.
    pub(super) fn record_all(
        &mut self,
        key: &DeviceKey,
        user: &UserInfo,
        drafts: Vec<Draft>,
        now: i64,
    ) -> Result<(), AppError> {
        let device_id = self.device_id()?;
        let outbox = self
            .state
            .outbox
            .as_mut()
            .ok_or(AppError::Internal("outbox closed"))?;
        let signer = Signer {
            key,
            device_id,
            user,
        };
        outbox.append_all(&signer, drafts, now)?;
        Ok(())
    }
}
