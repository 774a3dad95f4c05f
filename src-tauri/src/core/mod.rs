//! The app core: everything the desktop app does, as plain Rust with headless tests.
//! [`Core`] is two parts with one lock each:
//!
//! - the device part ([`device`]): this workstation's enrollment, the keychain's device
//!   secret, the audit outbox and its upload, the contact with the server, and the wipe
//!   after a revocation: the same whoever is signed in.
//! - the session part ([`session`]): sign-in, second factor, lock and unlock, switch user
//!   and sign out, and what an unlocked session does (PHI reads, admin work).
//!
//! Lock order: the session's lock, then the device's, never the other way round; the types
//! make the other way impossible to write (see `device/mod.rs`). The lock listener and the
//! plugged-in security key sit behind a third lock of their own, taken alone and only to
//! copy them out. Network calls hold no lock.
//!
//! May import every folder (`local`, `secrets`, `net`, `os`) and the crate root's `error`,
//! `config` and `files`; only `crate::commands` imports the core, and the core never
//! imports tauri. [`uploader`] is the audit uploader's background loop.

mod device;
mod session;
pub mod uploader;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{AppStatus, Phase};

use crate::config::{Config, Paths};
use crate::error::AppError;
use crate::local::users::UserCaches;
use crate::os::Lockable;
use crate::os::clock::{Clock, rfc3339};
use crate::os::security_key::{KeyPrompts, SecurityKey};
use crate::secrets::keychain::Keychain;
use device::{Device, KeychainState};
use session::SessionLock;
pub use session::{AppointmentAction, Booking, Synced};

type LockListener = Arc<dyn Fn() + Send + Sync>;

pub struct Core {
    config: Config,
    clock: Arc<dyn Clock>,
    device: Device,
    session: SessionLock,
    /// Held while the user's queue of changes is being sent: one sender at a time.
    sending: tokio::sync::Mutex<()>,
    /// Woken when a session opens: its queue may hold changes made offline.
    changes_wanted: tokio::sync::Notify,
    /// Held while the offline copy of the user's days is refreshed: one pass at a time. A
    /// sign-out's report takes it too, so it never lands before the last pass's.
    syncing: Arc<tokio::sync::Mutex<()>>,
    /// How far that pass is, for the status bar.
    sync_progress: Mutex<Option<clinicdesk_protocol::app::SyncProgress>>,
    /// The session (its generation) and the monotonic time of the last complete pass.
    last_sync: Mutex<Option<(u64, std::time::Instant)>>,
    /// The last changes the server stored, for the command that made one to say so.
    sent: Mutex<std::collections::VecDeque<clinicdesk_protocol::app::ChangeSummary>>,
    /// What the shell plugged in.
    wiring: Mutex<Wiring>,
    /// What the key waits for while a ceremony runs; the UI's PIN goes through it.
    key_prompts: Arc<KeyPrompts>,
}

#[derive(Default)]
struct Wiring {
    /// Called after every lock (idle, explicit, OS, server-ordered) and wipe.
    on_lock: Option<LockListener>,
    /// The authenticator for the WebAuthn second factor, if this build has one.
    security_key: Option<Arc<dyn SecurityKey>>,
}

impl Core {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        crate::files::private_dir(&config.data_dir)?;
        let device = Device::open(&config.data_dir, &config.keychain_service)?;
        let core = Self {
            config,
            clock,
            device,
            session: SessionLock::new(),
            sending: tokio::sync::Mutex::new(()),
            changes_wanted: tokio::sync::Notify::new(),
            syncing: Arc::new(tokio::sync::Mutex::new(())),
            sync_progress: Mutex::new(None),
            last_sync: Mutex::new(None),
            sent: Mutex::new(std::collections::VecDeque::new()),
            wiring: Mutex::new(Wiring::default()),
            key_prompts: Arc::new(KeyPrompts::default()),
        };
        if core.device.is_enrolled()
            && let Err(e) = core.device.ensure_outbox()
        {
            tracing::warn!(code = %e.to_api().code, "outbox not open at start");
        }
        Ok(core)
    }

    fn wiring(&self) -> MutexGuard<'_, Wiring> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.wiring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called after every lock (idle, explicit, OS, server-ordered) and wipe, e.g. to
    /// tell the UI.
    pub fn set_lock_listener(&self, listener: impl Fn() + Send + Sync + 'static) {
        self.wiring().on_lock = Some(Arc::new(listener));
    }

    /// Plugs in the authenticator the WebAuthn second factor runs on.
    pub fn set_security_key(&self, key: Arc<dyn SecurityKey>) {
        self.wiring().security_key = Some(key);
    }

    fn security_key(&self) -> Option<Arc<dyn SecurityKey>> {
        self.wiring().security_key.clone()
    }

    /// Wakes the uploader and tells the listener that the app locked.
    fn notify_locked(&self) {
        self.device.want_upload();
        // Copied out first: the listener runs with no lock of the core held.
        let listener = self.wiring().on_lock.clone();
        if let Some(listener) = listener {
            listener();
        }
    }

    pub fn keychain(&self) -> &Keychain {
        self.device.keychain()
    }

    pub fn paths(&self) -> &Paths {
        self.device.paths()
    }

    pub fn users(&self) -> &UserCaches {
        self.device.users()
    }

    /// Tries the keychain again (after the user unlocked their OS keyring).
    pub fn retry_keychain(&self) -> AppStatus {
        if let Err(e) = self.device.ensure_outbox() {
            tracing::warn!(code = %e.to_api().code, "keychain still unavailable");
        }
        self.status()
    }

    /// Registers this workstation with a one-time code (see the device part's `enroll`).
    pub async fn enroll(&self, code: &str, device_name: &str) -> Result<AppStatus, AppError> {
        self.device.enroll(&self.config, code, device_name).await?;
        Ok(self.status())
    }

    pub fn status(&self) -> AppStatus {
        let now = self.clock.monotonic();
        let mut held = self.session.lock();
        let (state, mut proof) = self.device.under(&mut held);
        let device = proof.device().status();
        let session = state.status(now);
        drop(held);
        let mut phase = session.phase;
        if device.enrollment.is_none() {
            phase = if device.revoked.is_some() {
                Phase::Revoked
            } else {
                Phase::NotEnrolled
            };
        } else if phase == Phase::SignedOut {
            match device.keychain {
                KeychainState::Fine => {}
                KeychainState::Unavailable => phase = Phase::KeychainUnavailable,
                KeychainState::SecretMissing => phase = Phase::DeviceSecretMissing,
            }
        }
        let mut mfa_methods = Vec::new();
        if matches!(
            phase,
            Phase::SignedOut | Phase::Locked | Phase::DeviceSecretMissing
        ) && let Some((waiting, methods)) = session.waiting
        {
            phase = waiting;
            mfa_methods = methods;
        }
        AppStatus {
            phase,
            clinic_name: device.enrollment.as_ref().map(|e| e.clinic_name.clone()),
            server_url: device
                .enrollment
                .map(|e| e.server_url)
                .unwrap_or_else(|| self.config.server_url.clone()),
            user: session.user,
            idle_seconds_left: session.idle_seconds_left,
            outbox_pending: device.outbox_pending,
            offline_session: session.offline_session,
            online: device.online,
            last_upload_at: device.last_upload_ms.map(rfc3339),
            mfa_methods,
            security_key: self.security_key().is_some(),
            security_key_prompt: self.key_prompts.current(),
            revocation: device.revoked,
            unsent_changes: session.unsent_changes,
            sync: self.sync_progress(),
            offline_copy: session.offline_copy,
        }
    }

    /// `result` with any refusal handled as [`Core::on_server_error`] says.
    async fn answered<T>(&self, result: Result<T, AppError>) -> Result<T, AppError> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => Err(self.on_server_error(e).await),
        }
    }

    /// What the server's refusal means here: a revoked device hands in its outbox and
    /// wipes itself ([`Core::revoked`]); an expired session locks, so the user unlocks again.
    async fn on_server_error(&self, e: AppError) -> AppError {
        match &e {
            AppError::Server(api) if api.code == ErrorCode::DeviceRevoked => self.revoked(0).await,
            AppError::Server(api)
                if matches!(
                    api.code,
                    ErrorCode::SessionExpired | ErrorCode::Unauthenticated
                ) =>
            {
                self.lock_because("session_expired");
                AppError::Locked
            }
            _ => e,
        }
    }
}

/// The OS side (lock signals, the idle watch) locks the app through this.
impl Lockable for Core {
    fn lock_for(&self, cause: &'static str) {
        self.lock_because(cause);
    }

    fn lock_if_idle(&self) -> bool {
        Core::lock_if_idle(self)
    }
}
