//! The session part of the core: who is signed in on this workstation and whether the
//! session is unlocked. The state machine is [`Session`]: signed out, unlocked, locked;
//! a sign-in waiting for its second factor ([`second_factor`]) sits beside it. Signing in
//! and unlocking are in [`sign_in`], PHI reads in [`phi`], and the online work of a session
//! in [`admin`], [`break_glass`], [`care_team`], [`password`] and [`recovery`].
//!
//! [`Unlocked`] owns everything secret about a user's session: the server token, the
//! device signing key and the user's open cache. Locking replaces it with
//! [`Session::Locked`], which holds only who was signed in, so dropping it closes the
//! cache (SQLCipher wipes its key) and zeroizes the keys; every PHI command then answers
//! `locked`. The device's audit outbox is in the device part and stays open (it is keyed
//! from the device secret alone), so events keep uploading while locked.
//!
//! This part's lock is the first of the core's two: with a [`SessionGuard`] held, the
//! device's lock is taken through `Device::under` (see `core/device/mod.rs`), never the
//! other way round. Network calls run without holding either, and their results are kept
//! only if the same unlocked session is still current (its `generation`), so a lock during
//! a fetch discards the fetched PHI ([`phi`]).

mod admin;
mod break_glass;
mod care_team;
mod changes;
mod coverage;
mod front_desk;
mod password;
mod phi;
mod recovery;
mod second_factor;
mod sign_in;
mod sync;

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clinicdesk_protocol::app::{AppStatus, Phase, Revocation};
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::MfaMethod;
use clinicdesk_protocol::wire::{OfflineCopyReport, UserInfo};
use secrecy::SecretString;

use super::Core;
use super::device::SessionHeld;
use crate::error::AppError;
use crate::local::cache::Cache;
use crate::local::changes as queue;
use crate::local::outbox::Draft;
use crate::net::client::ServerClient;
use crate::secrets::device_key::DeviceKey;

pub use front_desk::{AppointmentAction, Booking};
use second_factor::Pending;
use sign_in::Opening;
pub use sync::Synced;

/// A signed-in user's live session. Dropping it is locking it.
struct Unlocked {
    user: UserInfo,
    /// `None` when unlocked offline: PHI comes from the cache only.
    token: Option<SecretString>,
    key: DeviceKey,
    cache: Cache,
    idle_timeout: Duration,
    /// On the core's monotonic clock.
    deadline: Instant,
    /// The same deadline on the wall clock, which (unlike the monotonic one) runs on while
    /// the machine sleeps: a resume after the deadline locks even when no OS lock signal
    /// came. (A clock set forward locks too, which is safe; one set back changes nothing,
    /// as the monotonic deadline still holds.)
    wall_deadline_ms: i64,
    generation: u64,
}

enum Session {
    SignedOut,
    Unlocked(Box<Unlocked>),
    Locked(UserInfo),
}

/// Everything behind the session's lock.
pub(super) struct SessionState {
    session: Session,
    /// A sign-in waiting for its second factor.
    pending: Option<Pending>,
    /// Counts the sessions opened: each [`Unlocked`] carries its own number.
    generation: u64,
}

/// The session's lock: the first of the core's two.
pub(super) struct SessionLock(Mutex<SessionState>);

/// The session state, locked. Holding it is what `Device::under` asks for before it lets
/// the device's lock be taken.
pub(super) struct SessionGuard<'a>(MutexGuard<'a, SessionState>);

impl SessionLock {
    pub(super) fn new() -> Self {
        Self(Mutex::new(SessionState {
            session: Session::SignedOut,
            pending: None,
            generation: 0,
        }))
    }

    pub(super) fn lock(&self) -> SessionGuard<'_> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        SessionGuard(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Deref for SessionGuard<'_> {
    type Target = SessionState;

    fn deref(&self) -> &SessionState {
        &self.0
    }
}

impl DerefMut for SessionGuard<'_> {
    fn deref_mut(&mut self) -> &mut SessionState {
        &mut self.0
    }
}

/// What the status screen shows of the session part.
pub(super) struct SessionStatus {
    /// `SignedOut`, `Locked` or `Unlocked`.
    pub phase: Phase,
    pub user: Option<UserInfo>,
    pub idle_seconds_left: Option<u64>,
    pub offline_session: bool,
    /// A sign-in waiting for its second factor: the phase it shows, and the factors the
    /// user may prove.
    pub waiting: Option<(Phase, Vec<MfaMethod>)>,
    /// While unlocked: the user's changes not yet on the server.
    pub unsent_changes: Option<u64>,
    /// While unlocked: what the user's copy holds.
    pub offline_copy: Option<clinicdesk_protocol::app::OfflineCopy>,
}

impl SessionState {
    pub(super) fn status(&self, now: Instant) -> SessionStatus {
        let (phase, user, idle_seconds_left, offline_session) = match &self.session {
            Session::SignedOut => (Phase::SignedOut, None, None, false),
            Session::Locked(user) => (Phase::Locked, Some(user.clone()), None, false),
            Session::Unlocked(u) => (
                Phase::Unlocked,
                Some(u.user.clone()),
                Some(u.deadline.saturating_duration_since(now).as_secs()),
                u.token.is_none(),
            ),
        };
        SessionStatus {
            phase,
            user,
            idle_seconds_left,
            offline_session,
            waiting: self.pending.as_ref().and_then(|p| p.phase(now)),
            unsent_changes: match &self.session {
                Session::Unlocked(u) => queue::count(u.cache.connection()).ok(),
                _ => None,
            },
            offline_copy: match &self.session {
                Session::Unlocked(u) => u.cache.holdings().ok().map(|(patients, days, at)| {
                    clinicdesk_protocol::app::OfflineCopy {
                        patients,
                        days,
                        refreshed_at: at.map(crate::os::clock::rfc3339),
                    }
                }),
                _ => None,
            },
        }
    }
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

impl Core {
    fn session_snapshot(&self) -> Result<(Option<SecretString>, u64), AppError> {
        match &self.session.lock().session {
            Session::Unlocked(u) => Ok((u.token.clone(), u.generation)),
            Session::Locked(_) => Err(AppError::Locked),
            Session::SignedOut => Err(AppError::SignedOut),
        }
    }

    /// Runs `f` on the unlocked session if it is still generation `generation`, with the
    /// proof that lets it take the device's lock (to record an event).
    fn with_unlocked<R>(
        &self,
        generation: u64,
        f: impl FnOnce(&mut Unlocked, &mut SessionHeld<'_>) -> Result<R, AppError>,
    ) -> Result<R, AppError> {
        self.device.device_id()?;
        let mut held = self.session.lock();
        let (state, mut proof) = self.device.under(&mut held);
        match &mut state.session {
            Session::Unlocked(u) if u.generation == generation => f(u, &mut proof),
            Session::Unlocked(_) | Session::Locked(_) => Err(AppError::Locked),
            Session::SignedOut => Err(AppError::SignedOut),
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
        let (_, client) = self.device.enrolled()?;
        let fetched = request(client, token).await;
        self.device.note_network(&fetched);
        fetched
    }

    /// What the server's refusal of a request made for session `generation` means: as for
    /// any request ([`Core::on_server_error`]) while that session is still the current one.
    /// Once it is not (locked, switched, signed out meanwhile), an expired session is
    /// nobody's business: it must not lock, nor drop the sign-in of whoever is at the
    /// workstation now. A revoked device is everyone's.
    async fn refused_in(&self, generation: u64, e: AppError) -> AppError {
        let current = matches!(
            &self.session.lock().session,
            Session::Unlocked(u) if u.generation == generation
        );
        let session_ended = matches!(
            &e,
            AppError::Server(api) if matches!(
                api.code,
                clinicdesk_protocol::ErrorCode::SessionExpired
                    | clinicdesk_protocol::ErrorCode::Unauthenticated
            )
        );
        if !current && session_ended {
            return AppError::Locked;
        }
        self.on_server_error(e).await
    }

    /// Runs `request` with the session's token; a refusal is handled as for any request.
    async fn online_call<T, F, Fut>(&self, request: F) -> Result<T, AppError>
    where
        F: FnOnce(ServerClient, SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<T, AppError>>,
    {
        let (token, _) = self.session_snapshot()?;
        let fetched = self.fetch(token, request).await;
        self.answered(fetched).await
    }

    /// Puts `user`'s new session in place (after a sign-in or unlock that `opening` names)
    /// and records it, if the state is still the one it was opened from.
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
        self.device.device_id()?;
        let offline = token.is_none();
        let server_idle = Duration::from_secs(idle_secs.max(1));
        let idle_timeout = self
            .config
            .idle_override
            .map_or(server_idle, |o| o.min(server_idle));
        let (action, route) = opening.audited_as(offline);
        let mut held = self.session.lock();
        let (state, mut proof) = self.device.under(&mut held);
        if !opening.opens_from(&state.session, &user) {
            // The state changed while we were talking to the server.
            return Err(AppError::BadInput("session"));
        }
        proof.device().record(
            &key,
            &user,
            session_draft(action, &user, offline, route),
            now,
        )?;
        state.generation += 1;
        state.session = Session::Unlocked(Box::new(Unlocked {
            user,
            token,
            key,
            cache,
            idle_timeout,
            deadline: self.clock.monotonic() + idle_timeout,
            wall_deadline_ms: wall_deadline(self.clock.now_ms(), idle_timeout),
            generation: state.generation,
        }));
        state.pending = None;
        drop(held);
        self.device.want_upload();
        self.changes_wanted.notify_one();
        Ok(self.status())
    }

    /// Takes the unlocked session out of the state, recording `action` for it, and
    /// leaves `next(user)` in its place. Returns the session's user and token.
    fn end_unlocked(
        &self,
        action: AuditAction,
        route: &'static str,
        next: impl FnOnce(UserInfo) -> Session,
    ) -> Option<(UserInfo, Option<SecretString>)> {
        let mut held = self.session.lock();
        let (state, mut proof) = self.device.under(&mut held);
        if !matches!(state.session, Session::Unlocked(_)) {
            // Already locked or signed out: nothing to end, and nothing to change.
            return None;
        }
        let Session::Unlocked(mut u) = std::mem::replace(&mut state.session, Session::SignedOut)
        else {
            return None;
        };
        let mut device = proof.device();
        if device.device_id().is_ok() {
            let draft = session_draft(action, &u.user, u.token.is_none(), route);
            if device
                .record(&u.key, &u.user, draft, self.clock.now_ms())
                .is_err()
            {
                tracing::warn!("session event could not be recorded");
            }
        }
        drop(device);
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
        state.session = next(user.clone());
        Some((user, token))
    }

    /// Ends the server session in the background; the server's idle timeout ends it
    /// otherwise.
    fn end_server_session(&self, token: Option<SecretString>) {
        self.end_server_session_holding(token, None);
    }

    /// [`Core::end_server_session`]; with `Some(copy)`, first tells the server what the
    /// user's offline copy now holds (a sign-out: nothing, for the admins' list).
    fn end_server_session_holding(
        &self,
        token: Option<SecretString>,
        copy: Option<OfflineCopyReport>,
    ) {
        let (Some(token), Ok((_, client))) = (token, self.device.enrolled()) else {
            return;
        };
        let syncing = std::sync::Arc::clone(&self.syncing);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Some(copy) = copy {
                    // After the session's last sync pass: a pass ending as the user signed
                    // out may have its own report on the way, which must not land after this
                    // one (the admins' list would count a copy that is gone).
                    let _after_the_pass = syncing.lock_owned().await;
                    let _ = client.report_offline_copy(&token, &copy).await;
                }
                let _ = client.logout(&token).await;
            });
        }
    }

    /// Locks now: records the lock, closes the cache, drops the keys and the token, and
    /// ends the server session if it can be reached. The cache stays on disk.
    pub fn lock(&self) -> AppStatus {
        self.lock_because("lock")
    }

    /// [`Core::lock`], naming what caused it in the audit event (`idle`, `os_lock`, ...).
    /// A sign-in waiting for its second factor is dropped too: it holds the password
    /// (zeroized with it), and the next person at the workstation must not finish it.
    pub fn lock_because(&self, route: &'static str) -> AppStatus {
        self.session.lock().pending = None;
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
        self.session.lock().pending = None;
        if let Some((_, token)) =
            self.end_unlocked(AuditAction::Lock, "switch_user", |_| Session::SignedOut)
        {
            self.end_server_session(token);
            self.notify_locked();
        } else {
            let mut held = self.session.lock();
            if matches!(held.session, Session::Locked(_)) {
                held.session = Session::SignedOut;
            }
        }
        self.status()
    }

    /// Sign out: records it, ends the server session and removes this user's cache from
    /// the device. Unsent audit events stay in the device's outbox. Refused while the
    /// user's queue holds changes the server does not have (they live in that cache): the
    /// user sends them first, discards the ones the server refused, or locks instead.
    pub fn sign_out(&self) -> Result<AppStatus, AppError> {
        if let Session::Unlocked(u) = &self.session.lock().session
            && queue::count(u.cache.connection())? > 0
        {
            return Err(AppError::UnsentChanges);
        }
        let mut removed = Ok(());
        let (_, token) = self
            .end_unlocked(AuditAction::Logout, "sign_out", |user| {
                // Inside the state change: nobody sees "signed out" while the copy remains.
                removed = self.device.users().remove(user.user_id);
                Session::SignedOut
            })
            .ok_or(AppError::SignedOut)?;
        let nothing = OfflineCopyReport {
            patients: 0,
            days: 0,
        };
        self.end_server_session_holding(token, Some(nothing));
        removed?;
        tracing::info!("signed out; user cache removed");
        self.notify_locked();
        Ok(self.status())
    }

    /// Keyboard or pointer activity: pushes the idle deadline out.
    pub fn activity(&self) {
        if let Session::Unlocked(u) = &mut self.session.lock().session {
            u.deadline = self.clock.monotonic() + u.idle_timeout;
            u.wall_deadline_ms = wall_deadline(self.clock.now_ms(), u.idle_timeout);
        }
    }

    /// Locks if the idle deadline has passed on the core's monotonic clock, or on the wall
    /// clock (a suspend the OS did not signal); returns whether it locked.
    pub fn lock_if_idle(&self) -> bool {
        let cause = match &self.session.lock().session {
            Session::Unlocked(u) if self.clock.monotonic() >= u.deadline => Some("idle"),
            Session::Unlocked(u) if self.clock.now_ms() >= u.wall_deadline_ms => Some("suspend"),
            _ => None,
        };
        if let Some(cause) = cause {
            self.lock_because(cause);
        }
        cause.is_some()
    }

    /// The server revoked this device: the session ends now, before the outbox is handed
    /// in, so nothing is read or shown meanwhile.
    pub(in crate::core) fn end_session_for_revocation(&self) {
        let mut held = self.session.lock();
        let (state, _) = self.device.under(&mut held);
        state.session = Session::SignedOut;
        state.pending = None;
        state.generation += 1;
        drop(held);
        self.notify_locked();
    }

    /// The server revoked this device, and it handed in what it could of its outbox
    /// (`revocation`). The session ends, then the device part destroys the device secret in
    /// the keychain (every cache and the outbox become unreadable at once) and deletes the
    /// files, and the app shows that the device was revoked. Once only: a second call (the
    /// uploader and a request both hearing it) finds the device wiped.
    pub(in crate::core) fn wipe(&self, revocation: Revocation) {
        let mut held = self.session.lock();
        let (state, mut proof) = self.device.under(&mut held);
        state.session = Session::SignedOut;
        state.pending = None;
        state.generation += 1;
        let mut device = proof.device();
        if device.status().revoked.is_some() {
            return;
        }
        device.wipe(self.clock.now_ms(), revocation);
        drop(device);
        drop(held);
        tracing::warn!(
            handed_in = revocation.handed_in,
            left_behind = revocation.left_behind,
            "device revoked by the server: audit events handed in, then wiped"
        );
        self.notify_locked();
    }
}

/// The wall-clock time `idle_timeout` after `now_ms`.
fn wall_deadline(now_ms: i64, idle_timeout: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(idle_timeout.as_millis()).unwrap_or(i64::MAX))
}
