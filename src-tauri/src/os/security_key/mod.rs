//! Security keys for the WebAuthn second factor, run by the app's Rust core (the webview
//! never sees a ceremony). The core hands an authenticator the server's options as JSON
//! and sends back its answer; which authenticator is plugged in is chosen at start-up.
//!
//! - [`ctap`]: hardware keys over CTAP2, on USB in the app (feature `usb-security-key`, on
//!   by default). The key's PIN is asked for through the UI ([`KeyPrompts`]).
//! - Software keys compiled into demo and test builds alone (feature `soft-authenticator`):
//!   [`SoftSecurityKey`], a passkey that never prompts (`CLINICDESK_SOFT_SECURITY_KEY=1`),
//!   and [`SoftCtapKey`], a CTAP2 key with a PIN behind the same CTAP2 path as USB keys
//!   (`CLINICDESK_SOFT_SECURITY_KEY=pin`, PIN in `CLINICDESK_SOFT_SECURITY_KEY_PIN`).

pub mod ctap;
mod prompts;
#[cfg(feature = "soft-authenticator")]
mod soft;
#[cfg(feature = "soft-authenticator")]
mod soft_ctap;

pub use prompts::{KeyPrompts, PIN_WAIT};
#[cfg(feature = "soft-authenticator")]
pub use soft::SoftSecurityKey;
#[cfg(feature = "soft-authenticator")]
pub use soft_ctap::SoftCtapKey;

use url::Url;

/// Why an authenticator gave no answer. None of these carry what the key said.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityKeyError {
    /// No key answered, or the user did not touch it in time.
    #[error("no security key answered")]
    NoAnswer,
    /// The key holds no credential for this account, or refused the request.
    #[error("the security key refused")]
    Refused,
    /// The server's options could not be read, or name another site.
    #[error("the ceremony's options are not acceptable")]
    BadOptions,
    /// The user gave up, or left the key's PIN prompt unanswered.
    #[error("the security key ceremony was cancelled")]
    Cancelled,
    /// Too many wrong PINs since the key was plugged in: it takes no more until it is
    /// removed and plugged in again.
    #[error("the security key wants to be plugged in again")]
    PinPaused,
    /// Too many wrong PINs in all: the key is blocked until it is reset (which erases it).
    #[error("the security key's PIN is blocked")]
    PinBlocked,
    /// The key has no PIN, and the server requires user verification.
    #[error("the security key has no PIN")]
    NoPin,
    /// The key speaks no CTAP version this app knows.
    #[error("the security key is not supported")]
    Unsupported,
    /// A PIN was given while no key asked for one.
    #[error("no security key asks for a PIN")]
    NotAsked,
}

/// An authenticator the core can run a ceremony with. Calls may block until the user
/// plugs in, unlocks and touches the key: the core runs them on a blocking thread, and
/// what the key waits for goes through `prompts` to the UI.
pub trait SecurityKey: Send + Sync {
    /// Creates a credential for the server's `CreationChallengeResponse`; answers a
    /// `RegisterPublicKeyCredential`.
    fn register(
        &self,
        origin: &Url,
        options: serde_json::Value,
        prompts: &KeyPrompts,
    ) -> Result<serde_json::Value, SecurityKeyError>;

    /// Signs the server's `RequestChallengeResponse`; answers a `PublicKeyCredential`.
    fn authenticate(
        &self,
        origin: &Url,
        options: serde_json::Value,
        prompts: &KeyPrompts,
    ) -> Result<serde_json::Value, SecurityKeyError>;
}

/// Reads the server's options for a ceremony, runs `ceremony` on them, and writes the key's
/// answer back as JSON.
fn answer_with<O, A>(
    options: serde_json::Value,
    ceremony: impl FnOnce(O) -> Result<A, SecurityKeyError>,
) -> Result<serde_json::Value, SecurityKeyError>
where
    O: serde::de::DeserializeOwned,
    A: serde::Serialize,
{
    let options = serde_json::from_value(options).map_err(|_| SecurityKeyError::BadOptions)?;
    serde_json::to_value(ceremony(options)?).map_err(|_| SecurityKeyError::Refused)
}

/// The origin to report for a ceremony: the one the server names, if it is an https origin
/// whose domain is the pinned server's own host, so a server cannot have the user's key sign
/// for another site. A server on a loopback address (development, tests, the demo: WebAuthn
/// needs a domain) may name `localhost` only.
pub fn ceremony_origin(server_url: &str, named: &str) -> Result<Url, SecurityKeyError> {
    let named = Url::parse(named).map_err(|_| SecurityKeyError::BadOptions)?;
    let server = Url::parse(server_url).map_err(|_| SecurityKeyError::BadOptions)?;
    let domain = named
        .domain()
        .filter(|_| named.scheme() == "https")
        .ok_or(SecurityKeyError::BadOptions)?;
    let loopback = match server.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    match server.host() {
        Some(url::Host::Domain(host)) if host.eq_ignore_ascii_case(domain) => Ok(named),
        _ if loopback && domain.eq_ignore_ascii_case("localhost") => Ok(named),
        _ => Err(SecurityKeyError::BadOptions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_must_be_https_on_the_pinned_servers_own_domain() {
        let ok = ceremony_origin(
            "https://desk.clinic.example:8443",
            "https://desk.clinic.example",
        );
        assert_eq!(ok.unwrap().as_str(), "https://desk.clinic.example/");
        for (server, named) in [
            ("https://desk.clinic.example", "https://bank.example"),
            ("https://desk.clinic.example", "http://desk.clinic.example"),
            ("https://desk.clinic.example", "https://10.0.0.1"),
            ("https://desk.clinic.example", "not a url"),
            // An address is no domain: only a loopback server may name localhost.
            ("https://10.0.0.5:8443", "https://bank.example"),
            ("https://10.0.0.5:8443", "https://localhost"),
            ("https://127.0.0.1:8443", "https://bank.example"),
        ] {
            assert_eq!(
                ceremony_origin(server, named).unwrap_err(),
                SecurityKeyError::BadOptions,
                "{server} {named}"
            );
        }
        assert!(ceremony_origin("https://127.0.0.1:8443", "https://localhost").is_ok());
    }
}
