//! Opening a session: sign-in and unlock with the password, online with the server when it
//! answers (device proof, password, then perhaps a second factor: [`super::second_factor`])
//! or offline into this user's cache within the clinic's offline limit.

use clinicdesk_protocol::app::AppStatus;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::mfa::LoginStep;
use clinicdesk_protocol::wire::{
    LoginRequest, LoginResponse, MFA_GRANT_MS, ProofKey, UserInfo, login_proof_bytes,
};
use secrecy::SecretString;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::Session;
use super::second_factor::Stage;
use crate::core::Core;
use crate::error::AppError;
use crate::local::cache::{Cache, Meta};
use crate::local::db::DbError;
use crate::secrets::device_key::DeviceKey;
use crate::secrets::keys::DeviceSecret;
use crate::secrets::recovery_key::RecoveryKey;

/// How far behind the latest time a cache has seen the clock may be (small corrections
/// by time synchronisation) before an offline unlock stops trusting it.
const CLOCK_SLACK_MS: i64 = 5 * 60 * 1000;

/// A user's cache on this device as their password found it.
enum LocalCache {
    None,
    WrongPassword,
    Opened(Cache),
}

/// How a session was opened, for its audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opening {
    SignIn,
    Unlock,
    /// A sign-in that first gets the escrowed device secret back ([`super::recovery`]).
    Recovery,
}

impl Opening {
    /// The audit event's action and route for a session opened this way.
    pub(super) fn audited_as(self, offline: bool) -> (AuditAction, &'static str) {
        match (self, offline) {
            (Opening::SignIn, false) => (AuditAction::Login, "sign_in"),
            (Opening::SignIn, true) => (AuditAction::Unlock, "sign_in"),
            (Opening::Unlock, _) => (AuditAction::Unlock, "unlock"),
            (Opening::Recovery, _) => (AuditAction::Login, "recover_device_secret"),
        }
    }

    /// Whether `user`'s session opened this way may replace `session`: an unlock only the
    /// locked user's, a sign-in only a signed-out state.
    pub(super) fn opens_from(self, session: &Session, user: &UserInfo) -> bool {
        match (session, self) {
            (Session::Locked(previous), Opening::Unlock) => previous.user_id == user.user_id,
            (Session::SignedOut, Opening::SignIn | Opening::Recovery) => true,
            _ => false,
        }
    }
}

/// The key a login's device proof is signed with.
pub(super) enum LoginProof<'a> {
    Device(&'a DeviceKey),
    Recovery(&'a RecoveryKey),
}

impl Core {
    /// Sign-in: online with the server when it answers (device proof and password),
    /// otherwise offline into this user's existing cache with their password.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<AppStatus, AppError> {
        if !matches!(self.session.lock().session, Session::SignedOut) {
            return Err(AppError::BadInput("session"));
        }
        self.open_session(username, password, Opening::SignIn).await
    }

    /// Unlocks the locked user's session with their password; works offline.
    pub async fn unlock(&self, password: &str) -> Result<AppStatus, AppError> {
        let username = match &self.session.lock().session {
            Session::Locked(user) => user.username.clone(),
            _ => return Err(AppError::BadInput("session")),
        };
        self.open_session(&username, password, Opening::Unlock)
            .await
    }

    /// The password step with the server: a fresh nonce signed by the device key (every
    /// ordinary login) or by the recovery key ([`super::recovery`]).
    pub(super) async fn server_login(
        &self,
        username: &str,
        password: &str,
        proof: LoginProof<'_>,
        mfa_grant: Option<Zeroizing<String>>,
    ) -> Result<LoginStep, AppError> {
        let (enrollment, client) = self.device.enrolled()?;
        let challenge = client.challenge(enrollment.device_id).await;
        self.device.note_network(&challenge);
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
        self.device.note_network(&login);
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
        self.device.enrolled()?;
        self.device.ensure_outbox()?;
        let key = self.device.device_key()?;
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
            Err(e) => Err(self.on_server_error(e).await),
        }
    }

    /// Opens the session the server granted: the cache remembers the contact (and a new
    /// grant, after a second factor).
    pub(super) fn start_session(
        &self,
        key: DeviceKey,
        login: LoginResponse,
        mut cache: Cache,
        opening: Opening,
        now: i64,
    ) -> Result<AppStatus, AppError> {
        if let Some(grant) = &login.mfa_grant {
            cache.put_mfa_grant(grant.expose(), now)?;
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

    /// After the server accepted the password: this user's cache (`existing`, or found by
    /// id), or a new one when there is none or it was wrapped under an earlier password (a
    /// cache is only a copy; the audit outbox is separate, so nothing unsent is lost).
    pub(super) fn open_user_cache_online(
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
        self.device.with_device_secret(|secret| {
            let existing = match existing {
                Some(cache) => Some(cache),
                None => match self.device.users().load(user.user_id)? {
                    Some(wrapped) => self.device.users().open(secret, &wrapped, password)?,
                    None => None,
                },
            };
            let (mut cache, created) = match existing {
                Some(cache) => (cache, false),
                None => (self.device.users().create(secret, &user, password)?, true),
            };
            cache.put_meta(&meta)?;
            cache.note_time(now)?;
            let copy = self.device.users().recovery_copy_path(user.user_id);
            if created || !copy.exists() {
                self.store_recovery_copy(secret, user.user_id, password);
            }
            Ok(cache)
        })
    }

    /// Gives the user a copy of the recovery key that their password opens (stored with
    /// their cache, under the same password). A failure is logged, not fatal: the copy only
    /// matters if the keychain ever loses the device secret.
    pub(super) fn store_recovery_copy(&self, secret: &DeviceSecret, user_id: Uuid, password: &str) {
        let stored = RecoveryKey::load(self.device.paths(), secret).and_then(|key| match key {
            Some(key) => key.store_user_copy(
                &self.device.users().recovery_copy_path(user_id),
                user_id,
                password,
            ),
            None => Ok(()),
        });
        if let Err(e) = stored {
            tracing::error!(code = %e.to_api().code, "recovery key copy not stored");
        }
    }

    /// This user's cache on this device, opened with their password if it does.
    fn open_local_cache(&self, username: &str, password: &str) -> Result<LocalCache, AppError> {
        self.device.with_device_secret(|secret| {
            let Some(wrapped) = self.device.users().find(secret, username)? else {
                return Ok(LocalCache::None);
            };
            Ok(
                match self.device.users().open(secret, &wrapped, password)? {
                    Some(cache) => LocalCache::Opened(cache),
                    None => LocalCache::WrongPassword,
                },
            )
        })
    }

    /// The server cannot be reached: the cache opens within the clinic's maximum offline
    /// time since the last online sign-in, and with the password alone only within the 12
    /// hours a second factor counts for ([`MFA_GRANT_MS`]) since this user last proved one
    /// here online: someone who saw a colleague's password cannot unplug the network and
    /// read their cache days later without the second factor. The workstation's clock could
    /// be set back to stretch either time, so the cache remembers the latest time it has
    /// seen: a clock more than a few minutes behind it proves nothing, and the unlock waits
    /// for the server.
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
        if now.max(latest).saturating_sub(cache.second_factor_at_ms()?) > MFA_GRANT_MS {
            return Err(AppError::OfflineNeedsSecondFactor);
        }
        cache.note_time(now)?;
        Ok(meta)
    }
}
