//! Security keys for the WebAuthn second factor, run by the app's Rust core (the webview
//! never sees a ceremony). The core hands an authenticator the server's options as JSON
//! and sends back its answer; which authenticator is plugged in is chosen at start-up.
//!
//! Only a software authenticator exists so far, compiled into demo and test builds alone
//! (feature `soft-authenticator`) and switched on by `CLINICDESK_SOFT_SECURITY_KEY=1`. USB
//! security keys (CTAP2 through `webauthn-authenticator-rs`'s `usb` feature, with a PIN
//! prompt for user verification) are the next backend behind the same trait.

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
}

/// An authenticator the core can run a ceremony with. Calls may block until the user
/// touches the key: the core runs them on a blocking thread.
pub trait SecurityKey: Send + Sync {
    /// Creates a credential for the server's `CreationChallengeResponse`; answers a
    /// `RegisterPublicKeyCredential`.
    fn register(
        &self,
        origin: &Url,
        options: serde_json::Value,
    ) -> Result<serde_json::Value, SecurityKeyError>;

    /// Signs the server's `RequestChallengeResponse`; answers a `PublicKeyCredential`.
    fn authenticate(
        &self,
        origin: &Url,
        options: serde_json::Value,
    ) -> Result<serde_json::Value, SecurityKeyError>;
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

#[cfg(feature = "soft-authenticator")]
pub use soft::SoftSecurityKey;

#[cfg(feature = "soft-authenticator")]
mod soft {
    use std::sync::{Mutex, PoisonError};

    use url::Url;
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
    use webauthn_authenticator_rs::softpasskey::SoftPasskey;

    use super::{SecurityKey, SecurityKeyError};

    /// A passkey held in this process's memory: for demos and tests only. It claims the
    /// user verification it cannot do (there is no PIN or biometric behind it), which a
    /// real key does with its PIN; its credentials end with the process.
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

    impl SecurityKey for SoftSecurityKey {
        fn register(
            &self,
            origin: &Url,
            options: serde_json::Value,
        ) -> Result<serde_json::Value, SecurityKeyError> {
            let options: CreationChallengeResponse =
                serde_json::from_value(options).map_err(|_| SecurityKeyError::BadOptions)?;
            let mut key = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let credential = key
                .do_registration(origin.clone(), options)
                .map_err(|_| SecurityKeyError::Refused)?;
            serde_json::to_value(credential).map_err(|_| SecurityKeyError::Refused)
        }

        fn authenticate(
            &self,
            origin: &Url,
            options: serde_json::Value,
        ) -> Result<serde_json::Value, SecurityKeyError> {
            let options: RequestChallengeResponse =
                serde_json::from_value(options).map_err(|_| SecurityKeyError::BadOptions)?;
            let mut key = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let credential = key
                .do_authentication(origin.clone(), options)
                .map_err(|_| SecurityKeyError::Refused)?;
            serde_json::to_value(credential).map_err(|_| SecurityKeyError::Refused)
        }
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
