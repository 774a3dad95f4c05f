//! A software passkey for demos and tests (feature `soft-authenticator`).

use std::sync::{Mutex, PoisonError};

use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use super::{KeyPrompts, SecurityKey, SecurityKeyError, answer_with};

/// A passkey held in this process's memory: for demos and tests only. It claims the
/// user verification it cannot do (there is no PIN or biometric behind it), which a
/// real key does with its PIN; its credentials end with the process. It never prompts.
pub struct SoftSecurityKey(Mutex<SoftPasskey>);

impl SoftSecurityKey {
    pub fn new() -> Self {
        Self(Mutex::new(SoftPasskey::new(true)))
    }
}

impl Default for SoftSecurityKey {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftSecurityKey {
    fn key(&self) -> std::sync::MutexGuard<'_, SoftPasskey> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SecurityKey for SoftSecurityKey {
    fn register(
        &self,
        origin: &Url,
        options: serde_json::Value,
        _prompts: &KeyPrompts,
    ) -> Result<serde_json::Value, SecurityKeyError> {
        answer_with(options, |options: CreationChallengeResponse| {
            self.key()
                .do_registration(origin.clone(), options)
                .map_err(|_| SecurityKeyError::Refused)
        })
    }

    fn authenticate(
        &self,
        origin: &Url,
        options: serde_json::Value,
        _prompts: &KeyPrompts,
    ) -> Result<serde_json::Value, SecurityKeyError> {
        answer_with(options, |options: RequestChallengeResponse| {
            self.key()
                .do_authentication(origin.clone(), options)
                .map_err(|_| SecurityKeyError::Refused)
        })
    }
}
