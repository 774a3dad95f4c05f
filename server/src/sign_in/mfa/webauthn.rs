//! WebAuthn ceremonies through `webauthn-rs` (passkeys and security keys, user
//! verification required). Ceremony state is serialized into the ticket row, so the
//! instance that finishes need not be the one that began.

use clinicdesk_protocol::audit::to_hex;
use clinicdesk_protocol::wire::UserInfo;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::error::ServerError;

/// The relying party the server is, by default `https://localhost` (any port).
pub const DEFAULT_ORIGIN: &str = "https://localhost";

const REGISTRATION: &str = "webauthn-reg:";
const AUTHENTICATION: &str = "webauthn-auth:";

#[derive(Debug, thiserror::Error)]
pub enum WebauthnConfigError {
    #[error("the WebAuthn origin must be an https URL with a domain name")]
    Origin,
}

pub struct RelyingParty {
    webauthn: Webauthn,
    origin: Url,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelyingParty({})", self.origin)
    }
}

fn bad(_: impl std::fmt::Debug) -> ServerError {
    ServerError::InvalidSecondFactor
}

fn internal(what: &'static str) -> impl Fn(serde_json::Error) -> ServerError {
    move |_| ServerError::Internal(what)
}

/// A credential's stored id (hex of its raw id).
pub fn credential_id(passkey: &Passkey) -> String {
    to_hex(passkey.cred_id())
}

impl RelyingParty {
    /// The relying party for `origin`; its host is the RP id, any port is accepted.
    pub fn new(origin: &str) -> Result<Self, WebauthnConfigError> {
        let origin = Url::parse(origin).map_err(|_| WebauthnConfigError::Origin)?;
        let rp_id = origin
            .domain()
            .filter(|_| origin.scheme() == "https")
            .ok_or(WebauthnConfigError::Origin)?
            .to_owned();
        let webauthn = WebauthnBuilder::new(&rp_id, &origin)
            .map_err(|_| WebauthnConfigError::Origin)?
            .rp_name("ClinicDesk")
            .allow_any_port(true)
            .build()
            .map_err(|_| WebauthnConfigError::Origin)?;
        Ok(Self { webauthn, origin })
    }

    /// The origin clients report (the app uses the one the server names).
    pub fn origin(&self) -> String {
        self.origin.as_str().trim_end_matches('/').to_owned()
    }

    /// Registration options, and the state to keep in the ticket.
    pub fn start_registration(
        &self,
        user: &UserInfo,
        existing: &[Passkey],
    ) -> Result<(serde_json::Value, String), ServerError> {
        let exclude = existing.iter().map(|p| p.cred_id().clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                user.user_id,
                &user.username,
                &user.display_name,
                Some(exclude),
            )
            .map_err(|_| ServerError::Internal("webauthn registration start"))?;
        let state = serde_json::to_string(&state).map_err(internal("webauthn state"))?;
        let options = serde_json::to_value(options).map_err(internal("webauthn options"))?;
        Ok((options, format!("{REGISTRATION}{state}")))
    }

    /// The new credential, if `credential` answers the registration in `pending`.
    pub fn finish_registration(
        &self,
        pending: Option<&str>,
        credential: serde_json::Value,
    ) -> Result<Passkey, ServerError> {
        let state: PasskeyRegistration = pending
            .and_then(|p| p.strip_prefix(REGISTRATION))
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or(ServerError::InvalidSecondFactor)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(bad)?;
        self.webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(bad)
    }

    /// Authentication options for the user's credentials, and the state to keep.
    pub fn start_authentication(
        &self,
        passkeys: &[Passkey],
    ) -> Result<(serde_json::Value, String), ServerError> {
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(passkeys)
            .map_err(|_| ServerError::Internal("webauthn authentication start"))?;
        let state = serde_json::to_string(&state).map_err(internal("webauthn state"))?;
        let options = serde_json::to_value(options).map_err(internal("webauthn options"))?;
        Ok((options, format!("{AUTHENTICATION}{state}")))
    }

    /// The credential that signed, updated (its signature counter), if `credential`
    /// answers the challenge in `pending` with one of `passkeys`.
    pub fn finish_authentication(
        &self,
        pending: Option<&str>,
        credential: serde_json::Value,
        mut passkeys: Vec<Passkey>,
    ) -> Result<Passkey, ServerError> {
        let state: PasskeyAuthentication = pending
            .and_then(|p| p.strip_prefix(AUTHENTICATION))
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or(ServerError::InvalidSecondFactor)?;
        let credential: PublicKeyCredential = serde_json::from_value(credential).map_err(bad)?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&credential, &state)
            .map_err(bad)?;
        let index = passkeys
            .iter()
            .position(|p| p.cred_id() == result.cred_id())
            .ok_or(ServerError::InvalidSecondFactor)?;
        let mut passkey = passkeys.swap_remove(index);
        passkey.update_credential(&result);
        Ok(passkey)
    }
}

/// Parses stored credentials.
pub fn parse_passkeys(stored: &[String]) -> Result<Vec<Passkey>, ServerError> {
    stored
        .iter()
        .map(|json| {
            serde_json::from_str(json)
                .map_err(|_| ServerError::Internal("stored passkey malformed"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_need_https_and_a_domain() {
        assert!(RelyingParty::new(DEFAULT_ORIGIN).is_ok());
        assert_eq!(
            RelyingParty::new("https://clinic.example:8443")
                .unwrap()
                .origin(),
            "https://clinic.example:8443"
        );
        assert!(RelyingParty::new("http://localhost").is_err());
        assert!(RelyingParty::new("https://127.0.0.1").is_err());
        assert!(RelyingParty::new("not a url").is_err());
    }
}
