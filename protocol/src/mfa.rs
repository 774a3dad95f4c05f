//! The second factor: what a password login answers, and the bodies of the TOTP,
//! recovery-code and WebAuthn steps that turn its ticket into a session.
//!
//! Tickets, codes, grants and secrets redact themselves in `Debug`.

use serde::{Deserialize, Serialize};

use crate::wire::LoginResponse;

/// What a password login from an enrolled device answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum LoginStep {
    /// The request carried a live MFA grant for this user on this device: a session.
    SignedIn(LoginResponse),
    /// Prove one of the user's second factors with the ticket.
    SecondFactor(MfaTicket),
    /// The user has no second factor yet (first sign-in, or after an admin reset):
    /// set one up with the ticket before any session is issued.
    SetUpSecondFactor(MfaTicket),
    /// The password was chosen by someone else (an admin creating the user, the operator
    /// provisioning a clinic): choose one's own with the ticket, then the second factor.
    ChooseNewPassword(MfaTicket),
}

/// A login ticket and the password the user chose to replace a first password.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirstPassword {
    pub ticket: String,
    pub new_password: String,
}

impl std::fmt::Debug for FirstPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FirstPassword(<redacted>)")
    }
}

/// A short-lived, single-user, single-device ticket for the second step of a login.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaTicket {
    pub ticket: String,
    /// The factors this user can prove now (empty while setting one up).
    pub methods: Vec<MfaMethod>,
    pub expires_in_secs: u64,
}

impl std::fmt::Debug for MfaTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaTicket")
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MfaMethod {
    /// RFC 6238 time-based codes from an authenticator app.
    Totp,
    /// A security key or passkey.
    Webauthn,
    /// One of the single-use codes shown when the first factor was set up.
    RecoveryCode,
}

/// A ticket and a typed code: a TOTP code, or a recovery code.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaCode {
    pub ticket: String,
    pub code: String,
}

impl std::fmt::Debug for MfaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaCode(<redacted>)")
    }
}

/// A ticket alone: starts a TOTP setup or a WebAuthn ceremony.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaTicketRequest {
    pub ticket: String,
}

impl std::fmt::Debug for MfaTicketRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaTicketRequest(<redacted>)")
    }
}

/// A new TOTP secret, shown once for the user's authenticator app; it takes effect only
/// when a code from it is confirmed.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpSetup {
    /// The secret in base32 (RFC 4648, no padding), for typing into an app.
    pub secret_base32: String,
    /// `otpauth://totp/...` (SHA-1, 6 digits, 30 s), for a QR code.
    pub otpauth_uri: String,
}

impl std::fmt::Debug for TotpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSetup(<redacted>)")
    }
}

/// The first factor is set up: the session, and the recovery codes, shown once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaEnrolled {
    pub session: LoginResponse,
    /// Ten single-use codes such as `K7QM-X2PD-9RTV`; the server keeps only their hashes.
    pub recovery_codes: Vec<String>,
}

impl std::fmt::Debug for MfaEnrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaEnrolled")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// A WebAuthn ceremony's options (`CreationChallengeResponse` or
/// `RequestChallengeResponse` of the WebAuthn spec, as JSON) and the origin the client
/// must report: the app talks to one pinned server, so the server names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebauthnChallenge {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub options: serde_json::Value,
    pub origin: String,
}

/// The authenticator's answer to a [`WebauthnChallenge`] (`RegisterPublicKeyCredential`
/// or `PublicKeyCredential`, as JSON).
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebauthnResponse {
    pub ticket: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub credential: serde_json::Value,
}

impl std::fmt::Debug for WebauthnResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebauthnResponse(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_tagged_and_secrets_do_not_print() {
        let step = LoginStep::SetUpSecondFactor(MfaTicket {
            ticket: "SECRET-TICKET".into(),
            methods: vec![],
            expires_in_secs: 300,
        });
        let json = serde_json::to_value(&step).unwrap();
        assert_eq!(json["next"], "set_up_second_factor");
        assert_eq!(json["ticket"], "SECRET-TICKET");
        assert!(!format!("{step:?}").contains("SECRET"));
        let code = MfaCode {
            ticket: "SECRET-TICKET".into(),
            code: "123456".into(),
        };
        assert!(!format!("{code:?}").contains("SECRET"));
        assert!(!format!("{code:?}").contains("123456"));
    }
}
