//! The app's core state machine: not enrolled, signed out, unlocked, locked.
//!
//! [`Unlocked`] owns everything secret: the session token, the device key and the open
//! cache. Locking replaces it with [`Session::Locked`], which holds only who was signed
//! in, so dropping it closes the cache (SQLCipher wipes its key) and zeroizes the keys;
//! every PHI command then answers `locked`. Network calls run without holding the state
//! lock, and their results are kept only if the same unlocked session is still current
//! (its `generation`), so a lock during a fetch discards the fetched PHI.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{AppStatus, Phase};
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::wire::{
    AppointmentList, AuditUpload, EnrollRequest, LoginRequest, Patient, UserInfo, login_proof_bytes,
};
use secrecy::SecretString;
use uuid::Uuid;

use crate::cache::{self, Cache, CacheError};
use crate::client::ServerClient;
use crate::clock::{Clock, rfc3339};
use crate::config::Config;
use crate::device::{self, CACHE_KEY, DeviceKey, Enrollment, Paths};
use crate::error::AppError;
use crate::keychain::{Keychain, random_key};
use crate::outbox::{self, Draft, Signer};

/// The most events sent in one upload.
const UPLOAD_BATCH: usize = 100;

/// A signed-in user's live session. Dropping it is locking it.
pub struct Unlocked {
    user: UserInfo,
    token: SecretString,
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
}

type LockListener = Box<dyn Fn() + Send + Sync>;

pub struct Core {
    config: Config,
    paths: Paths,
    keychain: Keychain,
    clock: Arc<dyn Clock>,
    enrolled: Mutex<Option<Enrolled>>,
    session: Mutex<Session>,
    net: Mutex<Net>,
    generation: std::sync::atomic::AtomicU64,
    upload_wanted: tokio::sync::Notify,
    on_lock: Mutex<Option<LockListener>>,
}

/// A sign-in, unlock or lock of the user's session: no patient, no fields.
fn session_draft(action: AuditAction, user: &UserInfo, route: &'static str) -> Draft {
    Draft {
        action,
        resource_type: "Session",
        resource_id: user.user_id.to_string(),
        patient_id: None,
        fields: Vec::new(),
        offline: false,
        route,
    }
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Core {
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| AppError::Io("data dir", e))?;
        let paths = Paths::under(&config.data_dir);
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
        Ok(Self {
            config,
            paths,
            keychain,
            clock,
            enrolled: Mutex::new(enrolled),
            session: Mutex::new(Session::SignedOut),
            net: Mutex::new(Net::default()),
            generation: std::sync::atomic::AtomicU64::new(0),
            upload_wanted: tokio::sync::Notify::new(),
            on_lock: Mutex::new(None),
        })
    }

    /// Called after every lock (idle, explicit or server-ordered), e.g. to tell the UI.
    pub fn set_lock_listener(&self, listener: impl Fn() + Send + Sync + 'static) {
        *guard(&self.on_lock) = Some(Box::new(listener));
    }

    pub fn keychain(&self) -> &Keychain {
        &self.keychain
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
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

    pub fn status(&self) -> AppStatus {
        let enrolled = guard(&self.enrolled).as_ref().map(|e| e.enrollment.clone());
        let net = guard(&self.net);
        let (online, last_upload_ms) = (net.online, net.last_upload_ms);
        drop(net);
        let session = guard(&self.session);
        let (phase, user, idle_left, pending) = match (&enrolled, &*session) {
            (None, _) => (Phase::NotEnrolled, None, None, None),
            (Some(_), Session::SignedOut) => (Phase::SignedOut, None, None, None),
            (Some(_), Session::Locked(user)) => (Phase::Locked, Some(user.clone()), None, None),
            (Some(_), Session::Unlocked(u)) => (
                Phase::Unlocked,
                Some(u.user.clone()),
                Some(
                    u.deadline
                        .saturating_duration_since(Instant::now())
                        .as_secs(),
                ),
                outbox::count(u.cache.connection()).ok(),
            ),
        };
        AppStatus {
            phase,
            clinic_name: enrolled.as_ref().map(|e| e.clinic_name.clone()),
            server_url: enrolled
                .map(|e| e.server_url)
                .unwrap_or_else(|| self.config.server_url.clone()),
            user,
            idle_seconds_left: idle_left,
            outbox_pending: pending,
            online,
            last_upload_at: last_upload_ms.map(rfc3339),
        }
    }

    /// Registers this workstation: a new device key in the keychain, its public half sent
    /// with the one-time code, the server's CA pinned, and a new random cache key.
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
        let key = DeviceKey::create(&self.keychain)?;
        let result = client
            .enroll(&EnrollRequest {
                enrollment_code: code.to_owned(),
                device_name: device_name.to_owned(),
                public_key: key.public_key_hex(),
            })
            .await;
        self.note_network(&result);
        let response = result?;
        self.keychain.store_key(CACHE_KEY, &*random_key()?)?;
        device::write_atomic(&self.paths.pinned_ca, &ca)?;
        let enrollment = Enrollment {
            device_id: response.device_id,
            clinic_id: response.clinic_id,
            clinic_name: response.clinic_name,
            server_url: self.config.server_url.clone(),
            device_name: device_name.to_owned(),
        };
        device::save_enrollment(&self.paths, &enrollment)?;
        tracing::info!(device_id = %enrollment.device_id, "enrolled");
        *guard(&self.enrolled) = Some(Enrolled { enrollment, client });
        Ok(self.status())
    }

    /// Online sign-in: device proof, password, then the cache opens.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<AppStatus, AppError> {
        if !matches!(*guard(&self.session), Session::SignedOut) {
            return Err(AppError::BadInput("session"));
        }
        self.open_session(username, password, AuditAction::Login)
            .await
    }

    /// Unlocks the locked user's session; needs their password again.
    pub async fn unlock(&self, password: &str) -> Result<AppStatus, AppError> {
        let username = match &*guard(&self.session) {
            Session::Locked(user) => user.username.clone(),
            _ => return Err(AppError::BadInput("session")),
        };
        self.open_session(&username, password, AuditAction::Unlock)
            .await
    }

    async fn open_session(
        &self,
        username: &str,
        password: &str,
        action: AuditAction,
    ) -> Result<AppStatus, AppError> {
        if username.trim().is_empty() {
            return Err(AppError::BadInput("username"));
        }
        if password.is_empty() {
            return Err(AppError::BadInput("password"));
        }
        let (enrollment, client) = self.enrolled()?;
        let key = DeviceKey::load(&self.keychain)?;
        let challenge = client.challenge(enrollment.device_id).await;
        self.note_network(&challenge);
        let nonce = challenge?.nonce;
        let login = client
            .login(&LoginRequest {
                username: username.trim().to_owned(),
                password: password.to_owned(),
                device_id: enrollment.device_id,
                device_signature: key.sign_hex(&login_proof_bytes(
                    &nonce,
                    enrollment.device_id,
                    username.trim(),
                )),
                nonce,
            })
            .await;
        self.note_network(&login);
        let login = login?;
        let cache_key = self.keychain.load_key(CACHE_KEY)?;
        let mut cache = Cache::open(&self.paths.cache, &cache_key)?;
        drop(cache_key);

        let server_idle = Duration::from_secs(login.idle_timeout_secs.max(1));
        let idle_timeout = self
            .config
            .idle_override
            .map_or(server_idle, |o| o.min(server_idle));
        let now = self.clock.now_ms();
        let user = login.user;
        cache.transaction(|tx| {
            outbox::append(
                tx,
                &Signer {
                    key: &key,
                    device_id: enrollment.device_id,
                    user: &user,
                },
                session_draft(action, &user, "sign_in"),
                now,
            )
            .map(|_| ())
        })?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let mut session = guard(&self.session);
        if let Session::Locked(previous) = &*session
            && previous.user_id != user.user_id
        {
            return Err(AppError::BadInput("username"));
        }
        *session = Session::Unlocked(Box::new(Unlocked {
            user,
            token: SecretString::from(login.session_token),
            key,
            cache,
            idle_timeout,
            deadline: Instant::now() + idle_timeout,
            generation,
        }));
        drop(session);
        self.upload_wanted.notify_one();
        Ok(self.status())
    }

    /// Keyboard or pointer activity: pushes the idle deadline out.
    pub fn activity(&self) {
        if let Session::Unlocked(u) = &mut *guard(&self.session) {
            u.deadline = Instant::now() + u.idle_timeout;
        }
    }

    /// Locks now: records the lock, closes the cache, drops the keys and the token, and
    /// ends the server session if it can be reached.
    pub fn lock(&self) -> AppStatus {
        let token = {
            let mut session = guard(&self.session);
            let previous = std::mem::replace(&mut *session, Session::SignedOut);
            match previous {
                Session::Unlocked(mut u) => {
                    if let Ok((enrollment, _)) = self.enrolled() {
                        let now = self.clock.now_ms();
                        let user = u.user.clone();
                        let signer_key = &u.key;
                        let result = u.cache.transaction(|tx| {
                            outbox::append(
                                tx,
                                &Signer {
                                    key: signer_key,
                                    device_id: enrollment.device_id,
                                    user: &user,
                                },
                                session_draft(AuditAction::Lock, &user, "lock"),
                                now,
                            )
                            .map(|_| ())
                        });
                        if result.is_err() {
                            tracing::warn!("lock event could not be recorded");
                        }
                    }
                    let Unlocked { user, token, .. } = *u;
                    *session = Session::Locked(user);
                    Some(token)
                }
                other => {
                    *session = other;
                    None
                }
            }
        };
        if let Some(token) = token {
            tracing::info!("locked");
            if let Ok((_, client)) = self.enrolled() {
                // Best effort: the server's own idle timeout ends it otherwise.
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _ = client.logout(&token).await;
                    });
                }
            }
            if let Some(listener) = &*guard(&self.on_lock) {
                listener();
            }
        }
        self.status()
    }

    /// Locks if the idle deadline has passed; returns whether it locked.
    pub fn lock_if_idle(&self) -> bool {
        let due = match &*guard(&self.session) {
            Session::Unlocked(u) => Instant::now() >= u.deadline,
            _ => false,
        };
        if due {
            self.lock();
        }
        due
    }

    fn session_snapshot(&self) -> Result<(SecretString, u64), AppError> {
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

    /// The server says this session is over: lock, so the user signs in again.
    fn on_server_error(&self, e: AppError) -> AppError {
        if let AppError::Server(api) = &e
            && matches!(
                api.code,
                ErrorCode::SessionExpired | ErrorCode::Unauthenticated | ErrorCode::DeviceRevoked
            )
        {
            self.lock();
            return AppError::Locked;
        }
        e
    }

    /// Today's schedule, from the server or, offline, from the cache; audited either way
    /// before it is returned.
    pub async fn appointments(&self) -> Result<AppointmentList, AppError> {
        let (token, generation) = self.session_snapshot()?;
        let (_, client) = self.enrolled()?;
        let fetched = client.appointments(&token).await;
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
            },
            cache::put_appointments,
        )
    }

    /// One patient, from the server or, offline, from the cache. The view's audit event is
    /// committed to the outbox before the record is returned (fail closed).
    pub async fn open_patient(&self, patient_id: Uuid) -> Result<Patient, AppError> {
        let (token, generation) = self.session_snapshot()?;
        let (_, client) = self.enrolled()?;
        let fetched = client.patient(&token, patient_id).await;
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
            },
            cache::put_patient,
        )
    }

    /// The one path PHI takes to the UI: the value fetched online, or read from the cache
    /// when the server cannot be reached, is returned only after its view event is
    /// committed to the outbox, in the same transaction as the cache write (online only),
    /// and only if the session that asked is still the unlocked one.
    fn record_view<T>(
        &self,
        generation: u64,
        fetched: Result<T, AppError>,
        from_cache: impl FnOnce(&Cache) -> Result<Option<T>, CacheError>,
        draft: impl FnOnce(&T, bool) -> Draft,
        store: impl FnOnce(&rusqlite::Transaction<'_>, &T, i64) -> Result<(), CacheError>,
    ) -> Result<T, AppError> {
        self.note_network(&fetched);
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
            let signer = Signer {
                key: &u.key,
                device_id,
                user: &u.user,
            };
            u.cache.transaction(|tx| {
                outbox::append(tx, &signer, draft(&value, offline), now)?;
                if !offline {
                    store(tx, &value, now)?;
                }
                Ok(())
            })?;
            Ok(value)
        })?;
        self.upload_wanted.notify_one();
        Ok(value)
    }

    /// Sends one batch of waiting events and forgets those the server's receipt names.
    /// Returns how many were acknowledged; `Ok(0)` when there was nothing to send or
    /// nobody is signed in.
    pub async fn upload_once(&self) -> Result<usize, AppError> {
        let Ok((token, generation)) = self.session_snapshot() else {
            return Ok(0);
        };
        let events = self.with_unlocked(generation, |u, _| {
            Ok(outbox::pending(u.cache.connection(), UPLOAD_BATCH)?)
        })?;
        if events.is_empty() {
            return Ok(0);
        }
        let (_, client) = self.enrolled()?;
        let receipt = client.upload_audit(&token, &AuditUpload { events }).await;
        self.note_network(&receipt);
        let receipt = receipt.map_err(|e| self.on_server_error(e))?;
        let removed = self.with_unlocked(generation, |u, _| {
            Ok(outbox::acknowledge(u.cache.connection(), &receipt.stored)?)
        })?;
        guard(&self.net).last_upload_ms = Some(self.clock.now_ms());
        Ok(removed)
    }

    /// Resolves when something was added to the outbox (or a session opened).
    pub async fn upload_wanted(&self) {
        self.upload_wanted.notified().await;
    }
}
