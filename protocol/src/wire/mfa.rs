//! The second factor: what a password login answers, and the bodies of the TOTP,
//! recovery-code and WebAuthn steps that turn its ticket into a session.
//!
//! Tickets, codes and TOTP secrets are [`Secret`]s, which redact themselves in `Debug`.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirstPassword {
    pub ticket: Secret,
    pub new_password: Secret,
}

/// A short-lived, single-user, single-device ticket for the second step of a login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaTicket {
    pub ticket: Secret,
    /// The factors this user can prove now (empty while setting one up).
    pub methods: Vec<MfaMethod>,
    pub expires_in_secs: u64,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaCode {
    pub ticket: Secret,
    pub code: Secret,
}

/// A ticket alone: starts a TOTP setup or a WebAuthn ceremony.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaTicketRequest {
    pub ticket: Secret,
}

/// A new TOTP secret, shown once for the user's authenticator app; it takes effect only
/// when a code from it is confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpSetup {
    /// The secret in base32 (RFC 4648, no padding), for typing into an app.
    pub secret_base32: Secret,
    /// `otpauth://totp/...` (SHA-1, 6 digits, 30 s), for a QR code.
    pub otpauth_uri: Secret,
}

/// The first factor is set up: the session, and the recovery codes, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaEnrolled {
    pub session: LoginResponse,
    /// Ten single-use codes such as `K7QM-X2PD-9RTV`; the server keeps only their hashes.
    pub recovery_codes: Vec<Secret>,
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
    pub ticket: Secret,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub credential: serde_json::Value,
}

/// Written out, not derived: the credential, the authenticator's signed answer with its
/// user handle, stays out of `Debug` as well as the ticket.
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

    #[test]
    fn setup_bodies_do_not_print_their_secrets() {
        let totp = TotpSetup {
            secret_base32: "CANARYSECRET".into(),
            otpauth_uri: "otpauth://totp/x?secret=CANARYSECRET".into(),
        };
        let first = FirstPassword {
            ticket: "CANARY-ticket".into(),
            new_password: "CANARY-pass".into(),
        };
        let request = MfaTicketRequest {
            ticket: "CANARY-ticket".into(),
        };
        let enrolled = MfaEnrolled {
            session: serde_json::from_value(serde_json::json!({
                "session_token": "CANARY-token",
                "user": {"user_id": uuid::Uuid::nil(), "username": "u", "display_name": "U",
                         "role": "admin", "clinic_id": uuid::Uuid::nil()},
                "idle_timeout_secs": 1, "max_offline_secs": 2, "mfa_grant": "CANARY-grant"
            }))
            .unwrap(),
            recovery_codes: vec!["CANARY-K7QM".into()],
        };
        for printed in [
            format!("{totp:?}"),
            format!("{first:?}"),
            format!("{request:?}"),
            format!("{enrolled:?}"),
        ] {
            assert!(!printed.contains("CANARY"), "{printed}");
        }
        let json = serde_json::to_value(&enrolled).unwrap();
        assert_eq!(json["recovery_codes"], serde_json::json!(["CANARY-K7QM"]));
        assert_eq!(json["session"]["session_token"], "CANARY-token");
    }
}
