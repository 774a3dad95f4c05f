//! The second step of an online sign-in or unlock: after the server accepted the password
//! it holds a ticket until the user proves a second factor (a TOTP code, a security key or
//! a recovery code) or sets up their first one; a user whose password someone else chose first chooses
//! their own. Until then no session, no cache and no PHI.
//!
//! The password waits here (in a `SecretString`, zeroized on drop) because the user's cache
//! opens with it once the server grants the session; the wait ends with the ticket's
//! lifetime, a cancel, or a switch of user.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{AppStatus, Phase, SecondFactorSetUp};
use clinicdesk_protocol::mfa::{
    FirstPassword, LoginStep, MfaCode, MfaEnrolled, MfaMethod, MfaTicket, MfaTicketRequest,
    TotpSetup, WebauthnResponse,
};
use clinicdesk_protocol::wire::LoginResponse;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::sign_in::Opening;
use crate::core::Core;
use crate::error::AppError;
use crate::net::client::CodeMethod;
use crate::os::security_key::ceremony_origin;
use crate::secrets::recovery_key::RecoveryKey;

/// Which step the waiting sign-in is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// The password was chosen by someone else: the user chooses their own first.
    ChoosePassword,
    /// The user has no second factor yet and sets one up.
    SetUp,
    /// The user proves one of their second factors.
    Verify,
}

pub(super) struct Pending {
    username: String,
    password: SecretString,
    ticket: SecretString,
    opening: Opening,
    stage: Stage,
    methods: Vec<MfaMethod>,
    /// On the core's monotonic clock: the ticket's lifetime.
    expires: Instant,
    /// A recovery sign-in's key, opened from the user's copy before the password step.
    recovery: Option<Arc<RecoveryKey>>,
}

impl Pending {
    fn live(&self, now: Instant) -> bool {
        now < self.expires
    }

    /// The phase and methods the UI shows while this waits.
    pub(super) fn phase(&self, now: Instant) -> Option<(Phase, Vec<MfaMethod>)> {
        self.live(now).then(|| match self.stage {
            Stage::ChoosePassword => (Phase::ChooseNewPassword, Vec::new()),
            Stage::SetUp => (Phase::SetUpSecondFactor, Vec::new()),
            Stage::Verify => (Phase::SecondFactor, self.methods.clone()),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ceremony {
    Register,
    Authenticate,
}

/// What a step needs from the waiting sign-in, copied out so no lock is held across I/O.
struct Waiting {
    username: String,
    password: SecretString,
    ticket: clinicdesk_protocol::Secret,
    opening: Opening,
    recovery: Option<Arc<RecoveryKey>>,
}

impl Core {
    pub(super) fn await_second_factor(
        &self,
        username: &str,
        password: &str,
        opening: Opening,
        ticket: MfaTicket,
        stage: Stage,
        recovery: Option<Arc<RecoveryKey>>,
    ) -> Result<AppStatus, AppError> {
        self.session.lock().pending = Some(Pending {
            username: username.to_owned(),
            password: SecretString::from(password.to_owned()),
            ticket: SecretString::from(ticket.ticket.expose()),
            opening,
            stage,
            methods: ticket.methods,
            expires: self.clock.monotonic() + Duration::from_secs(ticket.expires_in_secs),
            recovery,
        });
        Ok(self.status())
    }

    fn waiting(&self, stage: Stage) -> Result<Waiting, AppError> {
        let now = self.clock.monotonic();
        match &self.session.lock().pending {
            Some(p) if p.live(now) && p.stage == stage => Ok(Waiting {
                username: p.username.clone(),
                password: p.password.clone(),
                ticket: p.ticket.expose_secret().into(),
                opening: p.opening,
                recovery: p.recovery.clone(),
            }),
            _ => Err(AppError::BadInput("session")),
        }
    }

    /// Proves the second factor with a typed code; a wrong code leaves the sign-in waiting
    /// (the server ends the ticket after a few).
    pub async fn submit_second_factor(
        &self,
        method: CodeMethod,
        code: &str,
    ) -> Result<AppStatus, AppError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(AppError::BadInput("code"));
        }
        let waiting = self.waiting(Stage::Verify)?;
        let (_, client) = self.device.enrolled()?;
        let result = client
            .second_factor(
                method,
                &MfaCode {
                    ticket: waiting.ticket.clone(),
                    code: code.into(),
                },
            )
            .await;
        self.device.note_network(&result);
        let login = self.second_factor_answered(result).await?;
        self.finish(login, &waiting).await
    }

    /// Replaces a first password someone else chose (an admin, the operator) with the
    /// user's own; the sign-in goes on to the second factor, and the user's cache will open
    /// with the new password. A weak password leaves the step waiting.
    pub async fn choose_new_password(&self, new_password: &str) -> Result<AppStatus, AppError> {
        if new_password.is_empty() {
            return Err(AppError::BadInput("new_password"));
        }
        let waiting = self.waiting(Stage::ChoosePassword)?;
        let (_, client) = self.device.enrolled()?;
        let result = client
            .first_password(&FirstPassword {
                ticket: waiting.ticket.clone(),
                new_password: new_password.into(),
            })
            .await;
        self.device.note_network(&result);
        let step = self.second_factor_answered(result).await?;
        let (ticket, stage) = match step {
            LoginStep::SecondFactor(ticket) => (ticket, Stage::Verify),
            LoginStep::SetUpSecondFactor(ticket) => (ticket, Stage::SetUp),
            LoginStep::SignedIn(_) | LoginStep::ChooseNewPassword(_) => {
                return Err(AppError::Internal("unexpected step after a first password"));
            }
        };
        self.await_second_factor(
            &waiting.username,
            new_password,
            waiting.opening,
            ticket,
            stage,
            waiting.recovery,
        )
    }

    /// A new TOTP secret for the user's authenticator app.
    pub async fn start_totp_setup(&self) -> Result<TotpSetup, AppError> {
        let waiting = self.waiting(Stage::SetUp)?;
        let (_, client) = self.device.enrolled()?;
        let result = client
            .start_totp_setup(&MfaTicketRequest {
                ticket: waiting.ticket,
            })
            .await;
        self.device.note_network(&result);
        self.second_factor_answered(result).await
    }

    /// Confirms the new TOTP secret with a code from the app: the session opens and the
    /// recovery codes come back, to be shown once.
    pub async fn confirm_totp_setup(&self, code: &str) -> Result<SecondFactorSetUp, AppError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(AppError::BadInput("code"));
        }
        let waiting = self.waiting(Stage::SetUp)?;
        let (_, client) = self.device.enrolled()?;
        let result = client
            .confirm_totp_setup(&MfaCode {
                ticket: waiting.ticket.clone(),
                code: code.into(),
            })
            .await;
        self.finish_setup(result, &waiting).await
    }

    /// Proves the second factor with the user's security key: the server's challenge,
    /// signed by the key (which may wait for a touch), sent back. A key that does not
    /// answer or is not registered for the user leaves the sign-in waiting.
    pub async fn verify_with_security_key(&self) -> Result<AppStatus, AppError> {
        let waiting = self.waiting(Stage::Verify)?;
        let credential = self
            .run_security_key(&waiting, Ceremony::Authenticate)
            .await?;
        let (_, client) = self.device.enrolled()?;
        let result = client
            .verify_webauthn(&WebauthnResponse {
                ticket: waiting.ticket.clone(),
                credential,
            })
            .await;
        self.device.note_network(&result);
        let login = self.second_factor_answered(result).await?;
        self.finish(login, &waiting).await
    }

    /// Registers the user's security key as their first second factor: the session opens
    /// and the recovery codes come back, to be shown once.
    pub async fn set_up_security_key(&self) -> Result<SecondFactorSetUp, AppError> {
        let waiting = self.waiting(Stage::SetUp)?;
        let credential = self.run_security_key(&waiting, Ceremony::Register).await?;
        let (_, client) = self.device.enrolled()?;
        let result = client
            .setup_webauthn(&WebauthnResponse {
                ticket: waiting.ticket.clone(),
                credential,
            })
            .await;
        self.finish_setup(result, &waiting).await
    }

    /// The server's answer to a first second factor: the session opens, and the recovery
    /// codes go to the UI to be shown once.
    async fn finish_setup(
        &self,
        result: Result<MfaEnrolled, AppError>,
        waiting: &Waiting,
    ) -> Result<SecondFactorSetUp, AppError> {
        self.device.note_network(&result);
        let enrolled = self.second_factor_answered(result).await?;
        let status = self.finish(enrolled.session, waiting).await?;
        Ok(SecondFactorSetUp {
            status,
            recovery_codes: enrolled.recovery_codes,
        })
    }

    /// Gets the server's options for the waiting ticket and runs them on the security key,
    /// on a blocking thread (a hardware key waits for the user's touch).
    async fn run_security_key(
        &self,
        waiting: &Waiting,
        ceremony: Ceremony,
    ) -> Result<serde_json::Value, AppError> {
        let key = self
            .security_key()
            .ok_or(AppError::BadInput("security_key"))?;
        let (enrollment, client) = self.device.enrolled()?;
        let challenge = client
            .webauthn_challenge(
                ceremony == Ceremony::Register,
                &MfaTicketRequest {
                    ticket: waiting.ticket.clone(),
                },
            )
            .await;
        self.device.note_network(&challenge);
        let challenge = self.second_factor_answered(challenge).await?;
        let origin = ceremony_origin(&enrollment.server_url, &challenge.origin)?;
        let options = challenge.options;
        let prompts = self.key_prompts.clone();
        prompts.begin();
        let answer = tokio::task::spawn_blocking(move || {
            let answer = match ceremony {
                Ceremony::Register => key.register(&origin, options, &prompts),
                Ceremony::Authenticate => key.authenticate(&origin, options, &prompts),
            };
            prompts.end();
            answer
        })
        .await
        .map_err(|_| AppError::Internal("security key thread"))??;
        Ok(answer)
    }

    /// The PIN the user typed for the security key that asks for it. It goes to the key
    /// and nowhere else.
    pub fn answer_security_key_pin(&self, pin: Zeroizing<String>) -> Result<(), AppError> {
        if pin.is_empty() {
            return Err(AppError::BadInput("pin"));
        }
        Ok(self.key_prompts.answer_pin(pin)?)
    }

    /// Gives up the running security key ceremony (a key waiting for a touch stops at its
    /// own timeout).
    pub fn cancel_security_key(&self) {
        self.key_prompts.cancel();
    }

    /// Gives up the waiting sign-in.
    pub fn cancel_sign_in(&self) -> AppStatus {
        self.session.lock().pending = None;
        self.status()
    }

    async fn finish(&self, login: LoginResponse, waiting: &Waiting) -> Result<AppStatus, AppError> {
        if login.user.username != waiting.username {
            return Err(AppError::Internal(
                "second factor answered for another user",
            ));
        }
        if waiting.opening == Opening::Recovery {
            let restored = match &waiting.recovery {
                Some(recovery) => self.restore_device_secret(&login, recovery).await,
                None => Err(AppError::Internal("a recovery sign-in without its key")),
            };
            if let Err(e) = restored {
                // No secret, no session: the one the server just granted is ended too.
                self.end_server_session(Some(SecretString::from(login.session_token.expose())));
                return Err(e);
            }
        }
        let key = self.device.device_key()?;
        let now = self.clock.now_ms();
        let password = waiting.password.expose_secret();
        let cache = self.open_user_cache_online(None, &login, password, now)?;
        self.start_session(key, login, cache, waiting.opening, now)
    }

    /// A refused code keeps the sign-in waiting; anything else the server says is handled
    /// as for any request (a revoked device wipes itself).
    async fn on_second_factor_error(&self, e: AppError) -> AppError {
        match &e {
            AppError::Server(api)
                if matches!(
                    api.code,
                    ErrorCode::InvalidSecondFactor | ErrorCode::WeakPassword
                ) =>
            {
                e
            }
            _ => self.on_server_error(e).await,
        }
    }

    /// `result` with a refusal handled as [`Core::on_second_factor_error`] says.
    async fn second_factor_answered<T>(&self, result: Result<T, AppError>) -> Result<T, AppError> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => Err(self.on_second_factor_error(e).await),
        }
    }
}
