//! Hardware security keys over CTAP2 (`webauthn-authenticator-rs`): the core finds a key,
//! asks for its PIN through the UI when the key wants user verification, tells the user to
//! touch it, and retries on a mistyped PIN until the key itself stops accepting tries.
//!
//! Where keys come from is a [`KeySource`]: USB HID in the app (feature
//! `usb-security-key`), or any other CTAP2 transport.

use std::time::{Duration, Instant};

use clinicdesk_protocol::app::KeyPrompt;
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::ctap2::CtapAuthenticator;
use webauthn_authenticator_rs::error::{CtapError, WebauthnCError};
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use webauthn_authenticator_rs::transport::Token;
use webauthn_authenticator_rs::types::{CableRequestType, CableState, EnrollSampleStatus};
use webauthn_authenticator_rs::ui::UiCallback;

use super::prompts::PIN_WAIT;
use super::{KeyPrompts, SecurityKey, SecurityKeyError, answer_with};

/// How long a ceremony waits for a key to be plugged in.
pub const INSERT_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// Where CTAP2 security keys are found.
pub trait KeySource: Send + Sync {
    type Token: Token;

    /// The keys plugged in now; none is no error. Called on a blocking thread inside the
    /// app's runtime.
    fn plugged_in(&self) -> Result<Vec<Self::Token>, SecurityKeyError>;
}

/// A security key reached over CTAP2: the first key found from `source`.
pub struct CtapSecurityKey<S> {
    source: S,
    insert_wait: Duration,
}

impl<S: KeySource> CtapSecurityKey<S> {
    pub fn new(source: S) -> Self {
        Self::with_insert_wait(source, INSERT_WAIT)
    }

    pub fn with_insert_wait(source: S, insert_wait: Duration) -> Self {
        Self {
            source,
            insert_wait,
        }
    }

    /// Waits for a key, showing "insert your key" while there is none.
    fn find_key(&self, prompts: &KeyPrompts) -> Result<S::Token, SecurityKeyError> {
        let deadline = Instant::now() + self.insert_wait;
        loop {
            if let Some(token) = self.source.plugged_in()?.into_iter().next() {
                prompts.show(None);
                return Ok(token);
            }
            if prompts.cancelled() {
                return Err(SecurityKeyError::Cancelled);
            }
            if Instant::now() >= deadline {
                return Err(SecurityKeyError::NoAnswer);
            }
            prompts.show(Some(KeyPrompt::InsertKey));
            std::thread::sleep(POLL);
        }
    }

    /// Runs `ceremony` on the key, again after each PIN the key refuses.
    fn run<R>(
        &self,
        prompts: &KeyPrompts,
        mut ceremony: impl FnMut(
            &mut CtapAuthenticator<'_, S::Token, Prompter<'_>>,
        ) -> Result<R, WebauthnCError>,
    ) -> Result<R, SecurityKeyError> {
        let token = self.find_key(prompts)?;
        let prompter = Prompter(prompts);
        let mut key = block_on(CtapAuthenticator::new(token, &prompter))?
            .ok_or(SecurityKeyError::Unsupported)?;
        loop {
            match ceremony(&mut key) {
                Ok(answer) => return Ok(answer),
                Err(WebauthnCError::Ctap(CtapError::Ctap2PinInvalid)) => prompts.pin_refused(),
                Err(e) => return Err(refusal(e, prompts)),
            }
        }
    }
}

impl<S: KeySource> SecurityKey for CtapSecurityKey<S> {
    fn register(
        &self,
        origin: &Url,
        options: serde_json::Value,
        prompts: &KeyPrompts,
    ) -> Result<serde_json::Value, SecurityKeyError> {
        answer_with(options, |options: CreationChallengeResponse| {
            self.run(prompts, |key| {
                key.do_registration(origin.clone(), options.clone())
            })
        })
    }

    fn authenticate(
        &self,
        origin: &Url,
        options: serde_json::Value,
        prompts: &KeyPrompts,
    ) -> Result<serde_json::Value, SecurityKeyError> {
        answer_with(options, |options: RequestChallengeResponse| {
            self.run(prompts, |key| {
                key.do_authentication(origin.clone(), options.clone())
            })
        })
    }
}

/// What the user is told for the way a key refused. What the key answered is not kept.
fn refusal(e: WebauthnCError, prompts: &KeyPrompts) -> SecurityKeyError {
    match e {
        _ if prompts.cancelled() => SecurityKeyError::Cancelled,
        WebauthnCError::Cancelled => SecurityKeyError::Cancelled,
        WebauthnCError::Ctap(CtapError::Ctap2PinAuthBlocked) => SecurityKeyError::PinPaused,
        WebauthnCError::Ctap(CtapError::Ctap2PinBlocked) => SecurityKeyError::PinBlocked,
        WebauthnCError::UserVerificationRequired
        | WebauthnCError::Ctap(CtapError::Ctap2PinNotSet | CtapError::Ctap2PUATRequired) => {
            SecurityKeyError::NoPin
        }
        WebauthnCError::Ctap(
            CtapError::Ctap2UserActionTimeout
            | CtapError::Ctap2ActionTimeout
            | CtapError::Ctap2KeepAliveCancel,
        ) => SecurityKeyError::NoAnswer,
        WebauthnCError::Ctap(_) => SecurityKeyError::Refused,
        _ => SecurityKeyError::NoAnswer,
    }
}

/// Runs a transport future from the ceremony's blocking thread, in the app's runtime (USB
/// transports need it).
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, SecurityKeyError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| SecurityKeyError::NoAnswer)?;
    Ok(runtime.block_on(future))
}

/// The key's requests to the user, shown through [`KeyPrompts`].
struct Prompter<'a>(&'a KeyPrompts);

impl std::fmt::Debug for Prompter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prompter")
    }
}

impl UiCallback for Prompter<'_> {
    fn request_pin(&self) -> Option<String> {
        // The library wants a String; the copy we hold is zeroized when it drops.
        self.0.ask_pin(PIN_WAIT).map(|pin| pin.as_str().to_owned())
    }

    fn request_touch(&self) {
        self.0.show(Some(KeyPrompt::TouchKey));
    }

    fn processing(&self) {}

    fn fingerprint_enrollment_feedback(&self, _: u32, _: Option<EnrollSampleStatus>) {}

    fn cable_qr_code(&self, _: CableRequestType, _: String) {}

    fn dismiss_qr_code(&self) {}

    fn cable_status_update(&self, _: CableState) {}
}

#[cfg(feature = "usb-security-key")]
pub use usb::UsbKeys;

#[cfg(feature = "usb-security-key")]
mod usb {
    use webauthn_authenticator_rs::error::WebauthnCError;
    use webauthn_authenticator_rs::transport::Transport;
    use webauthn_authenticator_rs::usb::{USBToken, USBTransport};

    use super::{KeySource, SecurityKeyError, block_on};

    /// FIDO security keys on USB (HID). On Linux the user needs read-write access to the
    /// key's `/dev/hidraw*` node, which the distributions' udev rules for FIDO keys give.
    pub struct UsbKeys;

    impl KeySource for UsbKeys {
        type Token = USBToken;

        fn plugged_in(&self) -> Result<Vec<USBToken>, SecurityKeyError> {
            match block_on(async { USBTransport::new().await?.tokens().await })? {
                Ok(tokens) => Ok(tokens),
                Err(WebauthnCError::NoHidDevices) => Ok(Vec::new()),
                Err(_) => Err(SecurityKeyError::NoAnswer),
            }
        }
    }
}

#[cfg(all(test, feature = "usb-security-key"))]
mod tests {
    use super::*;

    /// The USB backend as the app runs it (a blocking thread of the app's runtime) on this
    /// machine, which has no security key: it enumerates HID devices without failing,
    /// finds none, shows "insert your key" and gives up after its wait. A real key has
    /// never been plugged in here.
    #[tokio::test(flavor = "multi_thread")]
    async fn with_no_usb_key_plugged_in_the_user_is_asked_to_insert_one() {
        let found = tokio::task::spawn_blocking(|| UsbKeys.plugged_in())
            .await
            .unwrap();
        assert!(found.unwrap().is_empty());

        let prompts = std::sync::Arc::new(KeyPrompts::default());
        let watching = prompts.clone();
        let key = CtapSecurityKey::with_insert_wait(UsbKeys, Duration::from_millis(600));
        let ceremony = tokio::task::spawn_blocking(move || {
            key.authenticate(
                &Url::parse("https://localhost").unwrap(),
                serde_json::json!({"publicKey": {"challenge": "AAAA", "rpId": "localhost",
                    "allowCredentials": [], "userVerification": "required"}}),
                &watching,
            )
        });
        let mut asked = false;
        while !ceremony.is_finished() {
            asked |= prompts.current() == Some(KeyPrompt::InsertKey);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(asked, "the user was asked to insert a key");
        assert_eq!(ceremony.await.unwrap(), Err(SecurityKeyError::NoAnswer));
    }
}
