//! The app's core state machine: not enrolled, signed out, unlocked, locked, revoked.
//!
//! [`Unlocked`] owns everything secret about a user's session: the server token, the
//! device signing key and the user's open cache. Locking replaces it with
//! [`Session::Locked`], which holds only who was signed in, so dropping it closes the
//! cache (SQLCipher wipes its key) and zeroizes the keys; every PHI command then answers
//! `locked`. The device's audit [`Outbox`] is separate and stays open (it is keyed from
//! the device secret alone), so events keep uploading while locked.
//!
//! Network calls run without holding the state lock, and their results are kept only if
//! the same unlocked session is still current (its `generation`), so a lock during a
//! fetch discards the fetched PHI. Lock order: `session`, then `outbox`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{AppStatus, PatientSearchResults, Phase};
use clinicdesk_protocol::audit::{AuditAction, BreakGlass};
use clinicdesk_protocol::mfa::LoginStep;
use clinicdesk_protocol::wire::{
    AppointmentList, AuditUpload, EnrollRequest, LoginRequest, LoginResponse, Patient, ProofKey,
    UserInfo, login_proof_bytes,
};
use secrecy::SecretString;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::cache::{self, Cache, Meta};
use crate::client::ServerClient;
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::db::{self, DbError};
use crate::device::{self, DeviceKey, Enrollment, Paths};
use crate::error::AppError;
use crate::keychain::{Keychain, KeychainError};
use crate::keys::{DEVICE_SECRET, DeviceSecret};
use crate::outbox::{Draft, Outbox, Signer};
use crate::patient_search::PatientQuery;
use crate::recovery_key::RecoveryKey;
use crate::security_key::{KeyPrompts, SecurityKey};
use crate::users::UserCaches;

mod admin;
mod break_glass;
mod care_team;
mod password;
mod recovery;
mod second_factor;

use second_factor::Stage;

/// The most events sent in one upload.
const UPLOAD_BATCH: usize = 100;
/// How far behind the latest time a cache has seen the clock may be (small corrections
/// by time synchronisation) before an offline unlock stops trusting it.
const CLOCK_SLACK_MS: i64 = 5 * 60 * 1000;

/// A signed-in user's live session. Dropping it is locking it.
pub struct Unlocked {
    user: UserInfo,
    /// `None` when unlocked offline: PHI comes from the cache only.
    token: Option<SecretString>,
    key: DeviceKey,
    cache: Cache,
    idle_timeout: Duration,
    deadline: Instant,
    generation: u64,
}

pub enum Session {
    SignedOut,
    Unlocked(Box<Unlocked>),
    Locked(UserInfo),
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

type LockListener = Box<dyn Fn() + Send + Sync>;

pub struct Core {
    config: Config,
    paths: Paths,
    users: UserCaches,
    keychain: Keychain,
    clock: Arc<dyn Clock>,
    enrolled: Mutex<Option<Enrolled>>,
    session: Mutex<Session>,
    outbox: Mutex<Option<Outbox>>,
    /// What the keychain said the last time the device secret was asked for.
    keychain_state: Mutex<KeychainState>,
    revoked: AtomicBool,
    net: Mutex<Net>,
    generation: AtomicU64,
    upload_wanted: tokio::sync::Notify,
    on_lock: Mutex<Option<LockListener>>,
    /// A sign-in waiting for its second factor.
    pending: Mutex<Option<second_factor::Pending>>,
    /// The authenticator for the WebAuthn second factor, if this build has one.
    security_key: Mutex<Option<Arc<dyn SecurityKey>>>,
    /// What the key waits for while a ceremony runs; the UI's PIN goes through it.
    key_prompts: Arc<KeyPrompts>,
}

/// A session event of the user's: no patient, no fields.
fn session_draft(
    action: AuditAction,
    user: &UserInfo,
    offline: bool,
    route: &'static str,
) -> Draft {
    Draft {
        action,
        resource_type: "Session",
        resource_id: user.user_id.to_string(),
        patient_id: None,
        fields: Vec::new(),
        offline,
        route,
        break_glass: None,
    }
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A user's cache on this device as their password found it.
enum LocalCache {
    None,
    WrongPassword,
    Opened(Cache),
}

/// How a session was opened, for its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    SignIn,
    Unlock,
    /// A sign-in that first gets the escrowed device secret back ([`recovery`]).
    Recovery,
}

/// The key a login's device proof is signed with.
enum LoginProof<'a> {
    Device(&'a DeviceKey),
    Recovery(&'a RecoveryKey),
}

/// The keychain's answer to the last request for the device secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeychainState {
    Fine,
    /// Locked or unreachable: retrying may work.
    Unavailable,
    /// The entry is gone: only the escrowed copy brings it back.
    SecretMissing,
}

impl Core {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| AppError::Io("data dir", e))?;
        let paths = Paths::under(&config.data_dir);
        let users = UserCaches::under(&config.data_dir);
        let install_id = device::install_id(&paths)?;
        let keychain = Keychain::new(&config.keychain_service, &install_id.to_string());
        let enrolled = match device::load_enrollment(&paths)? {
            Some(enrollment) => {
                let ca = std::fs::read(&paths.pinned_ca)
                    .map_err(|e| AppError::Io("server-ca.pem", e))?;
                let client = ServerClient::new(&enrollment.server_url, &ca)?;
                Some(Enrolled { enrollment, client })
            }
            None => None,
        };
        let revoked = paths.revoked.exists();
        let core = Self {
            config,
            paths,
            users,
            keychain,
            clock,
            enrolled: Mutex::new(enrolled),
            session: Mutex::new(Session::SignedOut),
            outbox: Mutex::new(None),
            keychain_state: Mutex::new(KeychainState::Fine),
            revoked: AtomicBool::new(revoked),
            net: Mutex::new(Net::default()),
            generation: AtomicU64::new(0),
            upload_wanted: tokio::sync::Notify::new(),
            on_lock: Mutex::new(None),
            pending: Mutex::new(None),
            security_key: Mutex::new(None),
            key_prompts: Arc::new(KeyPrompts::default()),
        };
        if guard(&core.enrolled).is_some()
            && let Err(e) = core.ensure_outbox()
        {
            tracing::warn!(code = %e.to_api().code, "outbox not open at start");
        }
        Ok(core)
    }

    /// Called after every lock (idle, explicit, OS, server-ordered) and wipe, e.g. to
    /// tell the UI.
    pub fn set_lock_listener(&self, listener: impl Fn() + Send + Sync + 'static) {
        *guard(&self.on_lock) = Some(Box::new(listener));
    }

    /// Plugs in the authenticator the WebAuthn second factor runs on.
    pub fn set_security_key(&self, key: Arc<dyn SecurityKey>) {
        *guard(&self.security_key) = Some(key);
    }

    pub fn keychain(&self) -> &Keychain {
        &self.keychain
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn users(&self) -> &UserCaches {
        &self.users
    }

    fn enrolled(&self) -> Result<(Enrollment, ServerClient), AppError> {
        guard(&self.enrolled)
            .as_ref()
            .map(|e| (e.enrollment.clone(), e.client.clone()))
            .ok_or(AppError::NotEnrolled)
    }

    fn note_network<T>(&self, result: &Result<T, AppError>) {
        let reached = !matches!(result, Err(AppError::Unreachable));
        guard(&self.net).online = Some(reached);
    }

    /// Loads the device secret from the keychain (remembering whether it could) and
    /// runs `f` with it; the secret is zeroized when `f` returns.
    fn with_device_secret<R>(
        &self,
        f: impl FnOnce(&DeviceSecret) -> Result<R, AppError>,
    ) -> Result<R, AppError> {
        let secret = DeviceSecret::load(&self.keychain).map_err(|e| match e {
            crate::keys::KeyError::Keychain(k) => AppError::Keychain(k),
            _ => AppError::Internal("device secret"),
        });
        *guard(&self.keychain_state) = match &secret {
            Ok(_) => KeychainState::Fine,
            Err(AppError::Keychain(KeychainError::Missing)) => KeychainState::SecretMissing,
            Err(_) => KeychainState::Unavailable,
        };
        f(&secret?)
    }

    /// The device key, unwrapped with the device secret from the keychain.
    fn device_key(&self) -> Result<DeviceKey, AppError> {
        self.with_device_secret(|secret| DeviceKey::load(&self.paths, secret))
    }

    /// Opens the device's outbox if it is not open yet.
    fn ensure_outbox(&self) -> Result<(), AppError> {
        let mut outbox = guard(&self.outbox);
        if outbox.is_none() {
            let key = self.with_device_secret(|s| {
                s.outbox_key().map_err(|_| AppError::Internal("outbox key"))
            })?;
            *outbox = Some(Outbox::open(&self.paths.outbox, &key)?);
        }
        Ok(())
    }

    /// Tries the keychain again (after the user unlocked their OS keyring).
    pub fn retry_keychain(&self) -> AppStatus {
        if let Err(e) = self.ensure_outbox() {
            tracing::warn!(code = %e.to_api().code, "keychain still unavailable");
        }
        self.status()
    }

    pub fn status(&self) -> AppStatus {
        let enrolled = guard(&self.enrolled).as_ref().map(|e| e.enrollment.clone());
        let net = guard(&self.net);
        let (online, last_upload_ms) = (net.online, net.last_upload_ms);
        drop(net);
        let session = guard(&self.session);
        let (mut phase, user, idle_left, offline_session) = match &*session {
            Session::SignedOut => (Phase::SignedOut, None, None, false),
            Session::Locked(user) => (Phase::Locked, Some(user.clone()), None, false),
            Session::Unlocked(u) => (
                Phase::Unlocked,
                Some(u.user.clone()),
                Some(
                    u.deadline
                        .saturating_duration_since(Instant::now())
                        .as_secs(),
                ),
                u.token.is_none(),
            ),
        };
        drop(session);
        if enrolled.is_none() {
            phase = if self.revoked.load(Ordering::SeqCst) {
                Phase::Revoked
            } else {
                Phase::NotEnrolled
            };
        } else if phase == Phase::SignedOut {
            match *guard(&self.keychain_state) {
                KeychainState::Fine => {}
                KeychainState::Unavailable => phase = Phase::KeychainUnavailable,
                KeychainState::SecretMissing => phase = Phase::DeviceSecretMissing,
            }
        }
        let mut mfa_methods = Vec::new();
        if matches!(
            phase,
            Phase::SignedOut | Phase::Locked | Phase::DeviceSecretMissing
        ) && let Some((waiting, methods)) = guard(&self.pending).as_ref().and_then(|p| p.phase())
        {
            phase = waiting;
            mfa_methods = methods;
        }
        let pending = guard(&self.outbox).as_ref().and_then(|o| o.count().ok());
        AppStatus {
            phase,
            clinic_name: enrolled.as_ref().map(|e| e.clinic_name.clone()),
            server_url: enrolled
                .map(|e| e.server_url)
                .unwrap_or_else(|| self.config.server_url.clone()),
            user,
            idle_seconds_left: idle_left,
            outbox_pending: pending,
            offline_session,
            online,
            last_upload_at: last_upload_ms.map(rfc3339),
            mfa_methods,
            security_key: guard(&self.security_key).is_some(),
            security_key_prompt: self.key_prompts.current(),
        }
    }

    /// Registers this workstation: a new device secret in the keychain, a device key wrapped
    /// under it and a recovery key; the public keys and an escrow copy of the secret go to
    /// the server with the one-time code, and the server's CA is pinned.
    pub async fn enroll(&self, code: &str, device_name: &str) -> Result<AppStatus, AppError> {
        if guard(&self.enrolled).is_some() {
            return Err(AppError::AlreadyEnrolled);
        }
        let code = code.trim();
        if code.is_empty() {
            return Err(AppError::BadInput("enrollment_code"));
        }
        let device_name = device_name.trim();
        if device_name.is_empty() {
            return Err(AppError::BadInput("device_name"));
        }
        let ca_path = self
            .config
            .enrollment_ca
            .as_ref()
            .ok_or(AppError::Config("server_ca"))?;
        let ca = std::fs::read(ca_path).map_err(|e| AppError::Io("server CA file", e))?;
        let client = ServerClient::new(&self.config.server_url, &ca)?;
        // A fresh secret: nothing of an earlier enrollment on this install stays readable.
        let secret = DeviceSecret::create(&self.keychain).map_err(|e| match e {
            crate::keys::KeyError::Keychain(k) => AppError::Keychain(k),
            _ => AppError::Internal("device secret"),
        })?;
        *guard(&self.keychain_state) = KeychainState::Fine;
        let key = DeviceKey::create(&self.paths, &secret)?;
        let recovery = RecoveryKey::create(&self.paths, &secret)?;
        let result = client
            .enroll(&EnrollRequest {
                enrollment_code: code.into(),
                device_name: device_name.to_owned(),
                public_key: key.public_key_hex(),
                device_secret: secret.escrow_hex().as_str().into(),
                recovery_public_key: recovery.public_key_hex(),
            })
            .await;
        drop(secret);
        self.note_network(&result);
        let response = result?;
        *guard(&self.outbox) = None;
        db::remove_files(&self.paths.outbox).map_err(|e| AppError::Io("outbox", e))?;
        self.users.remove_all()?;
        device::write_atomic(&self.paths.pinned_ca, &ca)?;
        let enrollment = Enrollment {
            device_id: response.device_id,
            clinic_id: response.clinic_id,
            clinic_name: response.clinic_name,
            server_url: self.config.server_url.clone(),
            device_name: device_name.to_owned(),
            audit_public_key: response.audit_public_key,
        };
        device::save_enrollment(&self.paths, &enrollment)?;
        device::remove_file(&self.paths.revoked, "revoked.json")?;
        self.revoked.store(false, Ordering::SeqCst);
        tracing::info!(device_id = %enrollment.device_id, "enrolled");
        *guard(&self.enrolled) = Some(Enrolled { enrollment, client });
        self.ensure_outbox()?;
        Ok(self.status())
    }

    /// Sign-in: online with the server when it answers (device proof and password),
    /// otherwise offline into this user's existing cache with their password.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<AppStatus, AppError> {
        if !matches!(*guard(&self.session), Session::SignedOut) {
            return Err(AppError::BadInput("session"));
        }
        self.open_session(username, password, Opening::SignIn).await
    }

    /// Unlocks the locked user's session with their password; works offline.
    pub async fn unlock(&self, password: &str) -> Result<AppStatus, AppError> {
        let username = match &*guard(&self.session) {
            Session::Locked(user) => user.username.clone(),
            _ => return Err(AppError::BadInput("session")),
        };
        self.open_session(&username, password, Opening::Unlock)
            .await
    }

    /// The password step with the server: a fresh nonce signed by the device key (every
    /// ordinary login) or by the recovery key ([`recovery`]).
    async fn server_login(
        &self,
        username: &str,
        password: &str,
        proof: LoginProof<'_>,
        mfa_grant: Option<Zeroizing<String>>,
    ) -> Result<LoginStep, AppError> {
        let (enrollment, client) = self.enrolled()?;
        let challenge = client.challenge(enrollment.device_id).await;
        self.note_network(&challenge);
        let nonce = challenge?.nonce;
        let message = login_proof_bytes(&nonce, enrollment.device_id, username);
        let (device_signature, proof_key) = match proof {
            LoginProof::Device(key) => (key.sign_hex(&message), ProofKey::Device),
            LoginProof::Recovery(key) => (key.sign_hex(&message), ProofKey::Recovery),
        };
        let login = client
            .login(&LoginRequest {
                username: username.to_owned(),
                password: password.into(),
                device_id: enrollment.device_id,
                device_signature,
                proof_key,
                nonce,
                mfa_grant: mfa_grant.map(|g| g.as_str().into()),
                app_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            })
            .await;
        self.note_network(&login);
        login
    }

    async fn open_session(
        &self,
        username: &str,
        password: &str,
        opening: Opening,
    ) -> Result<AppStatus, AppError> {
        let username = username.trim();
        if username.is_empty() {
            return Err(AppError::BadInput("username"));
        }
        if password.is_empty() {
            return Err(AppError::BadInput("password"));
        }
        self.enrolled()?;
        self.ensure_outbox()?;
        let key = self.device_key()?;
        let now = self.clock.now_ms();
        // This user's cache here, if the password opens it: the grant of their last second
        // factor is inside, and offline it is all there is.
        let local = self.open_local_cache(username, password)?;
        let grant = match &local {
            LocalCache::Opened(cache) => cache.mfa_grant()?,
            _ => None,
        };
        match self
            .server_login(username, password, LoginProof::Device(&key), grant)
            .await
        {
            Ok(LoginStep::SignedIn(login)) => {
                let existing = match local {
                    LocalCache::Opened(cache) => Some(cache),
                    _ => None,
                };
                let cache = self.open_user_cache_online(existing, &login, password, now)?;
                self.start_session(key, login, cache, opening, now)
            }
            Ok(LoginStep::SecondFactor(ticket)) => {
                drop(local);
                self.await_second_factor(username, password, opening, ticket, Stage::Verify, None)
            }
            Ok(LoginStep::SetUpSecondFactor(ticket)) => {
                drop(local);
                self.await_second_factor(username, password, opening, ticket, Stage::SetUp, None)
            }
            Ok(LoginStep::ChooseNewPassword(ticket)) => {
                drop(local);
                self.await_second_factor(
                    username,
                    password,
                    opening,
                    ticket,
                    Stage::ChoosePassword,
                    None,
                )
            }
            Err(AppError::Unreachable) => {
                let mut cache = match local {
                    LocalCache::Opened(cache) => cache,
                    // No cache for this user here: nothing can be done without the server.
                    LocalCache::None => return Err(AppError::Unreachable),
                    LocalCache::WrongPassword => return Err(AppError::WrongPassword),
                };
                let meta = self.check_offline_limit(&mut cache, now)?;
                self.open_unlocked(
                    key,
                    meta.user,
                    None,
                    meta.idle_timeout_secs,
                    cache,
                    opening,
                    now,
                )
            }
            Err(e) => Err(self.on_server_error(e)),
        }
    }

    /// Opens the session the server granted: the cache remembers the contact (and a new
    /// grant, after a second factor).
    fn start_session(
        &self,
        key: DeviceKey,
        login: LoginResponse,
        mut cache: Cache,
        opening: Opening,
        now: i64,
    ) -> Result<AppStatus, AppError> {
        if let Some(grant) = &login.mfa_grant {
            cache.put_mfa_grant(grant.expose())?;
        }
        self.open_unlocked(
            key,
            login.user,
            Some(SecretString::from(login.session_token.expose())),
            login.idle_timeout_secs,
            cache,
            opening,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn open_unlocked(
        &self,
        key: DeviceKey,
        user: UserInfo,
        token: Option<SecretString>,
        idle_secs: u64,
        cache: Cache,
        opening: Opening,
        now: i64,
    ) -> Result<AppStatus, AppError> {
        let (enrollment, _) = self.enrolled()?;
        let offline = token.is_none();
        let server_idle = Duration::from_secs(idle_secs.max(1));
        let idle_timeout = self
            .config
            .idle_override
            .map_or(server_idle, |o| o.min(server_idle));
        let (action, route) = match (opening, offline) {
            (Opening::SignIn, false) => (AuditAction::Login, "sign_in"),
            (Opening::SignIn, true) => (AuditAction::Unlock, "sign_in"),
            (Opening::Unlock, _) => (AuditAction::Unlock, "unlock"),
            (Opening::Recovery, _) => (AuditAction::Login, "recover_device_secret"),
        };
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut session = guard(&self.session);
        match (&*session, opening) {
            (Session::Locked(previous), Opening::Unlock) if previous.user_id == user.user_id => {}
            (Session::SignedOut, Opening::SignIn | Opening::Recovery) => {}
            // The state changed while we were talking to the server.
            _ => return Err(AppError::BadInput("session")),
        }
        self.append_event(
            &key,
            enrollment.device_id,
            &user,
            session_draft(action, &user, offline, route),
            now,
        )?;
        *session = Session::Unlocked(Box::new(Unlocked {
            user,
            token,
            key,
            cache,
            idle_timeout,
            deadline: Instant::now() + idle_timeout,
            generation,
        }));
        drop(session);
        *guard(&self.pending) = None;
        self.upload_wanted.notify_one();
        Ok(self.status())
    }

    /// After the server accepted the password: this user's cache (`existing`, or found by
    /// id), or a new one when there is none or it was wrapped under an earlier password (a
    /// cache is only a copy; the audit outbox is separate, so nothing unsent is lost).
    fn open_user_cache_online(
        &self,
        existing: Option<Cache>,
        login: &LoginResponse,
        password: &str,
        now: i64,
    ) -> Result<Cache, AppError> {
        let user = login.user.clone();
        let meta = Meta {
            user: user.clone(),
            last_online_ms: now,
            max_offline_secs: login.max_offline_secs,
            idle_timeout_secs: login.idle_timeout_secs,
        };
        self.with_device_secret(|secret| {
            let existing = match existing {
                Some(cache) => Some(cache),
                None => match self.users.load(user.user_id)? {
                    Some(wrapped) => self.users.open(secret, &wrapped, password)?,
                    None => None,
                },
            };
            let (mut cache, created) = match existing {
                Some(cache) => (cache, false),
                None => (self.users.create(secret, &user, password)?, true),
            };
            cache.put_meta(&meta)?;
            cache.note_time(now)?;
            let copy = self.users.recovery_copy_path(user.user_id);
            if created || !copy.exists() {
                self.store_recovery_copy(secret, user.user_id, password);
            }
            Ok(cache)
        })
    }

    /// Gives the user a copy of the recovery key that their password opens (stored with
    /// their cache, under the same password). A failure is logged, not fatal: the copy only
    /// matters if the keychain ever loses the device secret.
    fn store_recovery_copy(&self, secret: &DeviceSecret, user_id: Uuid, password: &str) {
        let stored = RecoveryKey::load(&self.paths, secret).and_then(|key| match key {
            Some(key) => {
                key.store_user_copy(&self.users.recovery_copy_path(user_id), user_id, password)
            }
            None => Ok(()),
        });
        if let Err(e) = stored {
            tracing::error!(code = %e.to_api().code, "recovery key copy not stored");
        }
    }

    /// This user's cache on this device, opened with their password if it does.
    fn open_local_cache(&self, username: &str, password: &str) -> Result<LocalCache, AppError> {
        self.with_device_secret(|secret| {
            let Some(wrapped) = self.users.find(secret, username)? else {
                return Ok(LocalCache::None);
            };
            Ok(match self.users.open(secret, &wrapped, password)? {
                Some(cache) => LocalCache::Opened(cache),
                None => LocalCache::WrongPassword,
            })
        })
    }

    /// The server cannot be reached: the cache opens within the clinic's maximum offline
    /// time since the last online sign-in. The workstation's clock could be set back to
    /// stretch that time, so the cache remembers the latest time it has seen: a clock more
    /// than a few minutes behind it proves nothing, and the unlock waits for the server.
    fn check_offline_limit(&self, cache: &mut Cache, now: i64) -> Result<Meta, AppError> {
        let meta = cache.meta()?.ok_or(DbError::Malformed)?;
        let latest = cache.latest_seen_ms()?;
        if now < latest.saturating_sub(CLOCK_SLACK_MS) {
            tracing::warn!("the clock is behind the latest time this cache has seen");
            return Err(AppError::OfflineTooLong);
        }
        let limit_ms =
            i64::try_from(meta.max_offline_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if now.max(latest).saturating_sub(meta.last_online_ms) > limit_ms {
            return Err(AppError::OfflineTooLong);
        }
        cache.note_time(now)?;
        Ok(meta)
    }

    fn append_event(
        &self,
        key: &DeviceKey,
        device_id: Uuid,
        user: &UserInfo,
        draft: Draft,
        now: i64,
    ) -> Result<(), AppError> {
        let mut outbox = guard(&self.outbox);
        let outbox = outbox.as_mut().ok_or(AppError::Internal("outbox closed"))?;
        outbox.append(
            &Signer {
                key,
                device_id,
                user,
            },
            draft,
            now,
        )?;
        Ok(())
    }

    /// Keyboard or pointer activity: pushes the idle deadline out.
    pub fn activity(&self) {
        if let Session::Unlocked(u) = &mut *guard(&self.session) {
            u.deadline = Instant::now() + u.idle_timeout;
        }
    }

    /// Takes the unlocked session out of the state, recording `action` for it, and
    /// leaves `next(user)` in its place. Returns the session's user and token.
    fn end_unlocked(
        &self,
        action: AuditAction,
        route: &'static str,
        next: impl FnOnce(UserInfo) -> Session,
    ) -> Option<(UserInfo, Option<SecretString>)> {
        let mut session = guard(&self.session);
        if !matches!(*session, Session::Unlocked(_)) {
            // Already locked or signed out: nothing to end, and nothing to change.
            return None;
        }
        let Session::Unlocked(mut u) = std::mem::replace(&mut *session, Session::SignedOut) else {
            return None;
        };
        if let Ok((enrollment, _)) = self.enrolled() {
            let draft = session_draft(action, &u.user, u.token.is_none(), route);
            if self
                .append_event(
                    &u.key,
                    enrollment.device_id,
                    &u.user,
                    draft,
                    self.clock.now_ms(),
                )
                .is_err()
            {
                tracing::warn!("session event could not be recorded");
            }
        }
        if u.cache.note_time(self.clock.now_ms()).is_err() {
            tracing::warn!("the cache did not note the time of the lock");
        }
        // Closing the cache (SQLCipher wipes its key) and zeroizing the device key happen
        // here, before `next` runs and before anyone can see the new state.
        let Unlocked {
            user,
            token,
            key,
            cache,
            ..
        } = *u;
        drop((key, cache));
        *session = next(user.clone());
        Some((user, token))
    }

    /// Ends the server session in the background; the server's idle timeout ends it
    /// otherwise.
    fn end_server_session(&self, token: Option<SecretString>) {
        let (Some(token), Ok((_, client))) = (token, self.enrolled()) else {
            return;
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = client.logout(&token).await;
            });
        }
    }

    fn notify_locked(&self) {
        self.upload_wanted.notify_one();
        if let Some(listener) = &*guard(&self.on_lock) {
            listener();
        }
    }

    /// Locks now: records the lock, closes the cache, drops the keys and the token, and
    /// ends the server session if it can be reached. The cache stays on disk.
    pub fn lock(&self) -> AppStatus {
        self.lock_because("lock")
    }

    /// [`Core::lock`], naming what caused it in the audit event (`idle`, `os_lock`, ...).
    pub fn lock_because(&self, route: &'static str) -> AppStatus {
        if let Some((_, token)) = self.end_unlocked(AuditAction::Lock, route, Session::Locked) {
            tracing::info!(cause = route, "locked");
            self.end_server_session(token);
            self.notify_locked();
        }
        self.status()
    }

    /// Switch user: locks the current user (their cache stays) and shows sign-in, so
    /// another user can sign in or unlock their own cache.
    pub fn switch_user(&self) -> AppStatus {
        *guard(&self.pending) = None;
        if let Some((_, token)) =
            self.end_unlocked(AuditAction::Lock, "switch_user", |_| Session::SignedOut)
        {
            self.end_server_session(token);
            self.notify_locked();
        } else {
            let mut session = guard(&self.session);
            if matches!(*session, Session::Locked(_)) {
                *session = Session::SignedOut;
            }
        }
        self.status()
    }

    /// Sign out: records it, ends the server session and removes this user's cache from
    /// the device. Unsent audit events stay in the device's outbox.
    pub fn sign_out(&self) -> Result<AppStatus, AppError> {
        let mut removed = Ok(());
        let (_, token) = self
            .end_unlocked(AuditAction::Logout, "sign_out", |user| {
                // Inside the state change: nobody sees "signed out" while the copy remains.
                removed = self.users.remove(user.user_id);
                Session::SignedOut
            })
            .ok_or(AppError::SignedOut)?;
        self.end_server_session(token);
        removed?;
        tracing::info!("signed out; user cache removed");
        self.notify_locked();
        Ok(self.status())
    }

    /// Locks if the idle deadline has passed; returns whether it locked.
    pub fn lock_if_idle(&self) -> bool {
        let due = match &*guard(&self.session) {
            Session::Unlocked(u) => Instant::now() >= u.deadline,
            _ => false,
        };
        if due {
            self.lock_because("idle");
        }
        due
    }

    /// The server revoked this device. First the device secret is destroyed in the
    /// keychain (every cache and the outbox become unreadable at once), then the files
    /// are deleted, and the app shows that the device was revoked.
    pub fn wipe(&self) {
        let mut session = guard(&self.session);
        *session = Session::SignedOut;
        self.generation.fetch_add(1, Ordering::SeqCst);
        *guard(&self.outbox) = None;
        if self.keychain.delete(DEVICE_SECRET).is_err() {
            tracing::error!("keychain entry could not be deleted during wipe");
        }
        let results = [
            device::remove_file(&self.paths.device_key, "device-key.json"),
            device::remove_file(&self.paths.recovery_key, "recovery-key.json"),
            self.users.remove_all(),
            db::remove_files(&self.paths.outbox).map_err(|e| AppError::Io("outbox", e)),
            device::remove_file(&self.paths.enrollment, "enrollment.json"),
            device::remove_file(&self.paths.pinned_ca, "server-ca.pem"),
            device::write_json(
                &self.paths.revoked,
                &serde_json::json!({ "revoked_at_ms": self.clock.now_ms() }),
            ),
        ];
        for r in results {
            if let Err(e) = r {
                tracing::error!(code = %e.to_api().code, "wipe step failed");
            }
        }
        *guard(&self.enrolled) = None;
        self.revoked.store(true, Ordering::SeqCst);
        drop(session);
        tracing::warn!("device revoked by the server: wiped");
        self.notify_locked();
    }

    fn session_snapshot(&self) -> Result<(Option<SecretString>, u64), AppError> {
        match &*guard(&self.session) {
            Session::Unlocked(u) => Ok((u.token.clone(), u.generation)),
            Session::Locked(_) => Err(AppError::Locked),
            Session::SignedOut => Err(AppError::SignedOut),
        }
    }

    /// Runs `f` on the unlocked session if it is still generation `generation`.
    fn with_unlocked<R>(
        &self,
        generation: u64,
        f: impl FnOnce(&mut Unlocked, Uuid) -> Result<R, AppError>,
    ) -> Result<R, AppError> {
        let device_id = self.enrolled()?.0.device_id;
        match &mut *guard(&self.session) {
            Session::Unlocked(u) if u.generation == generation => f(u, device_id),
            Session::Unlocked(_) | Session::Locked(_) => Err(AppError::Locked),
            Session::SignedOut => Err(AppError::SignedOut),
        }
    }

    /// What the server's refusal means here: a revoked device wipes itself; an expired
    /// session locks, so the user unlocks again.
    fn on_server_error(&self, e: AppError) -> AppError {
        match &e {
            AppError::Server(api) if api.code == ErrorCode::DeviceRevoked => {
                self.wipe();
                AppError::DeviceRevoked
            }
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

    /// Asks the server with the session's token; a session unlocked offline has none and
    /// is answered `Unreachable` without trying, so PHI then comes from the cache.
    async fn fetch<T, F, Fut>(&self, token: Option<SecretString>, request: F) -> Result<T, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        let Some(token) = token else {
            return Err(AppError::Unreachable);
        };
        let (_, client) = self.enrolled()?;
        let fetched = request(client, token).await;
        self.note_network(&fetched);
        fetched
    }

    /// Today's schedule, from the server or, offline, from the cache; audited either way
    /// before it is returned.
    pub async fn appointments(&self) -> Result<AppointmentList, AppError> {
        let (token, generation) = self.session_snapshot()?;
        let fetched = self
            .fetch(token, |client, token| async move {
                client.appointments(&token).await
            })
            .await;
        self.record_view(
            generation,
            fetched,
            Cache::latest_appointments,
            |list, offline| Draft {
                action: AuditAction::View,
                resource_type: "Schedule",
                resource_id: list.date.clone(),
                patient_id: None,
                fields: vec!["starts_at".into(), "patient_name".into(), "reason".into()],
                offline,
                route: "schedule",
                break_glass: None,
            },
            cache::put_appointments,
        )
    }

    /// Patients in this user's encrypted cache matching `text` (words of a name, a date of
    /// birth or an MRN), online or offline. What is listed is audited first: one view event
    /// per patient shown (name, date of birth, MRN), committed together before the list is
    /// returned (fail closed). Not-a-search text is `bad_request` on `query`.
    pub fn search_patients(&self, text: &str) -> Result<PatientSearchResults, AppError> {
        let query = PatientQuery::parse(text).ok_or(AppError::BadInput("query"))?;
        let (_, generation) = self.session_snapshot()?;
        let now = self.clock.now_ms();
        let patients = self.with_unlocked(generation, |u, device_id| {
            let hits = u.cache.search_patients(&query)?;
            let offline = u.token.is_none();
            let drafts: Vec<Draft> = hits
                .iter()
                .map(|hit| Draft {
                    action: AuditAction::View,
                    resource_type: "Patient",
                    resource_id: hit.id.to_string(),
                    patient_id: Some(hit.id),
                    fields: ["name", "birth_date", "mrn"].map(str::to_owned).to_vec(),
                    offline,
                    route: "patient_search",
                    break_glass: None,
                })
                .collect();
            if !drafts.is_empty() {
                let mut outbox = guard(&self.outbox);
                let outbox = outbox.as_mut().ok_or(AppError::Internal("outbox closed"))?;
                let signer = Signer {
                    key: &u.key,
                    device_id,
                    user: &u.user,
                };
                outbox.append_all(&signer, drafts, now)?;
            }
            Ok(hits)
        })?;
        self.upload_wanted.notify_one();
        Ok(PatientSearchResults { patients })
    }

    /// One patient, from the server or, offline, from the cache. The view's audit event is
    /// committed to the outbox before the record is returned (fail closed).
    pub async fn open_patient(&self, patient_id: Uuid) -> Result<Patient, AppError> {
        let (token, generation) = self.session_snapshot()?;
        let fetched = self
            .fetch(token, |client, token| async move {
                client.patient(&token, patient_id).await
            })
            .await;
        self.record_view(
            generation,
            fetched,
            |cache| cache.cached_patient(patient_id),
            |patient, offline| Draft {
                action: AuditAction::View,
                resource_type: "Patient",
                resource_id: patient.id.to_string(),
                patient_id: Some(patient.id),
                fields: patient.field_names(),
                offline,
                route: "patient",
                // A chart read under a break-glass grant is flagged on the device too.
                break_glass: patient.break_glass.as_ref().map(|g| BreakGlass {
                    reason_code: g.reason_code.as_str().to_owned(),
                    reason_text: g.reason_text.expose().clone(),
                }),
            },
            cache::put_patient,
        )
    }

    /// The one path PHI takes to the UI: the value fetched online, or read from the
    /// user's cache when the server cannot be reached, is returned only after its view
    /// event is committed to the outbox, and only if the session that asked is still the
    /// unlocked one. Online, the cache write follows the committed event: a crash in
    /// between leaves an event for a write that did not happen, never the reverse.
    fn record_view<T>(
        &self,
        generation: u64,
        fetched: Result<T, AppError>,
        from_cache: impl FnOnce(&Cache) -> Result<Option<T>, DbError>,
        draft: impl FnOnce(&T, bool) -> Draft,
        store: impl FnOnce(&rusqlite::Transaction<'_>, &T, i64) -> Result<(), DbError>,
    ) -> Result<T, AppError> {
        let (fetched, offline) = match fetched {
            Ok(value) => (Some(value), false),
            Err(AppError::Unreachable) => (None, true),
            Err(e) => return Err(self.on_server_error(e)),
        };
        let now = self.clock.now_ms();
        let value = self.with_unlocked(generation, |u, device_id| {
            let value = match fetched {
                Some(value) => value,
                None => from_cache(&u.cache)?.ok_or(AppError::Unreachable)?,
            };
            self.append_event(&u.key, device_id, &u.user, draft(&value, offline), now)?;
            if !offline {
                u.cache.transaction(|tx| {
                    store(tx, &value, now)?;
                    cache::touch_online(tx, now)
                })?;
            }
            // A session kept open for hours raises the latest time the cache has seen too,
            // so a clock set back after it cannot stretch the offline limit.
            u.cache.note_time(now)?;
            Ok(value)
        })?;
        self.upload_wanted.notify_one();
        Ok(value)
    }

    /// Sends one batch of waiting events and forgets those the server's receipt names.
    /// Needs no user session: the events' device signatures are the credential, so this
    /// runs while locked too. When the server refuses some as conflicting with its own
    /// copy of this device's chain, the waiting events are re-chained onto the server's
    /// head ([`Outbox::rebase`]) and go out with the next batch. Returns how many events of
    /// the batch the receipt settled (stored, or re-chained to be sent again).
    pub async fn upload_once(&self) -> Result<usize, AppError> {
        let Ok((enrollment, client)) = self.enrolled() else {
            return Ok(0);
        };
        self.ensure_outbox()?;
        let events = match &*guard(&self.outbox) {
            Some(outbox) => outbox.pending(UPLOAD_BATCH)?,
            None => return Ok(0),
        };
        let Some(sent_through) = events.last().map(|e| e.event.device_seq) else {
            return Ok(0);
        };
        let sent = events.len();
        let receipt = client
            .upload_audit(&AuditUpload {
                device_id: enrollment.device_id,
                events,
            })
            .await;
        self.note_network(&receipt);
        let receipt = receipt.map_err(|e| self.on_server_error(e))?;
        crate::receipt::check(&receipt, &enrollment)?;
        let head = receipt.highest_contiguous_seq;
        if !receipt.forked.is_empty() {
            // Not PHI: sequence numbers. The server keeps the conflicting events as alerts.
            tracing::warn!(forked = ?receipt.forked, "server reports conflicting audit events");
            // Once per head: marked only after a re-chain that took, so a failed one is
            // tried again with the next batch.
            if guard(&self.net).rebased_onto != Some(head) {
                let key = self.device_key()?;
                let onto = (head, receipt.contiguous_hash);
                if let Some(outbox) = &mut *guard(&self.outbox) {
                    let rebased = outbox.rebase(&key, sent_through, &receipt.forked, onto)?;
                    tracing::warn!(
                        rebased,
                        onto = head,
                        "audit chain re-chained onto the server's"
                    );
                }
                let mut net = guard(&self.net);
                net.rebased_onto = Some(head);
                net.last_upload_ms = Some(self.clock.now_ms());
                drop(net);
                self.upload_wanted.notify_one();
                return Ok(sent);
            }
        }
        let removed = match &mut *guard(&self.outbox) {
            Some(outbox) => outbox
                .acknowledge_through(receipt.highest_contiguous_seq, &receipt.contiguous_hash)?
                .ok_or(AppError::BadReceipt("contiguous_hash"))?,
            None => 0,
        };
        guard(&self.net).last_upload_ms = Some(self.clock.now_ms());
        Ok(removed)
    }

    /// The sequence number of the last event this device signed (0 before the first).
    pub fn outbox_last_seq(&self) -> Result<u64, AppError> {
        self.ensure_outbox()?;
        match &*guard(&self.outbox) {
            Some(outbox) => Ok(outbox.last_seq()?),
            None => Err(AppError::Internal("outbox closed")),
        }
    }

    /// Resolves when something was added to the outbox (or a session opened).
    pub async fn upload_wanted(&self) {
        self.upload_wanted.notified().await;
    }
}
