//! The WebAuthn second factor run by the app's core against the real server process: a
//! first sign-in registers the user's security key, a later one is proven with it, and a
//! colleague's key is refused with the sign-in left waiting.
//!
//! Two kinds of key, both of demo and test builds (feature `soft-authenticator`): the
//! software passkey, and a software CTAP2 key with a PIN (`SoftCtapKey`) driven through the
//! app's CTAP2 path, the one USB keys take: the CTAP2 messages, the PIN protocol and the
//! prompts are real; no USB key can be plugged into this machine (and its kernel has no
//! uhid to fake one), so USB HID itself is not exercised.

use std::sync::Arc;
use std::time::Duration;

use clinicdesk_app::core::Core;
use clinicdesk_app::os::security_key::ctap::CtapSecurityKey;
use clinicdesk_app::os::security_key::{SoftCtapKey, SoftSecurityKey};
use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{KeyPrompt, Phase};
use clinicdesk_protocol::mfa::MfaMethod;
use clinicdesk_tests::{ServerProcess, enrolled_core};
use zeroize::Zeroizing;

#[tokio::test(flavor = "multi_thread")]
async fn a_security_key_is_set_up_then_signs_in_and_a_colleagues_key_is_refused() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Exam room 2").await;
    let password = server.seed.password("clinician");

    // No authenticator plugged in: the app offers none and runs no ceremony.
    let status = core.sign_in("clinician", password).await.unwrap();
    assert_eq!(status.phase, Phase::SetUpSecondFactor);
    assert!(!status.security_key);
    let refused = core.set_up_security_key().await.unwrap_err().to_api();
    assert_eq!(
        (refused.code, refused.field.as_deref()),
        (ErrorCode::BadRequest, Some("security_key"))
    );

    let key = Arc::new(SoftSecurityKey::new());
    core.set_security_key(key.clone());
    assert!(core.status().security_key);
    let done = core.set_up_security_key().await.unwrap();
    assert_eq!(done.status.phase, Phase::Unlocked);
    assert_eq!(done.recovery_codes.len(), 10);
    // A real session: the schedule comes from the server.
    assert!(!core.appointments().await.unwrap().appointments.is_empty());

    // Signing out removes the cache and the second-factor grant kept in it, so the next
    // sign-in asks for the key.
    core.sign_out().unwrap();
    let status = core.sign_in("clinician", password).await.unwrap();
    assert_eq!(status.phase, Phase::SecondFactor);
    assert_eq!(
        status.mfa_methods,
        vec![MfaMethod::Webauthn, MfaMethod::RecoveryCode]
    );

    // A colleague's key holds no credential for this account: refused, still waiting.
    core.set_security_key(Arc::new(SoftSecurityKey::new()));
    let refused = core.verify_with_security_key().await.unwrap_err().to_api();
    assert_eq!(
        (refused.code, refused.field.as_deref()),
        (ErrorCode::InvalidSecondFactor, Some("security_key"))
    );
    assert_eq!(core.status().phase, Phase::SecondFactor);

    core.set_security_key(key);
    let status = core.verify_with_security_key().await.unwrap();
    assert_eq!(status.phase, Phase::Unlocked);
    assert_eq!(status.user.unwrap().username, "clinician");
    core.appointments().await.unwrap();
}

/// Waits until the app shows `wanted` while a ceremony runs on another task.
async fn prompt_shows(core: &Core, wanted: KeyPrompt) {
    for _ in 0..1_000 {
        if core.status().security_key_prompt == Some(wanted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the app never asked for {wanted:?}; it shows {:?}",
        core.status().security_key_prompt
    );
}

async fn touch_when_blinking(core: &Core, key: &SoftCtapKey) {
    prompt_shows(core, KeyPrompt::TouchKey).await;
    assert!(key.waiting_for_touch());
    key.touch();
}

fn pin(text: &str) -> Zeroizing<String> {
    Zeroizing::new(text.to_owned())
}

fn ctap_key(key: &SoftCtapKey) -> Arc<CtapSecurityKey<SoftCtapKey>> {
    Arc::new(CtapSecurityKey::with_insert_wait(
        key.clone(),
        Duration::from_secs(30),
    ))
}

/// A CTAP2 key with a PIN, through the app's CTAP2 path: the app asks for the key to be
/// plugged in, for its PIN (again after a wrong one), and for a touch; the server accepts
/// the credential as user-verified, at set-up and at the next sign-in.
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_protected_key_is_asked_for_its_pin_and_touch_through_the_app() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Front desk 3").await;
    let password = server.seed.password("frontdesk");
    let key = SoftCtapKey::new("4826").unwrap();
    core.set_security_key(ctap_key(&key));

    let status = core.sign_in("frontdesk", password).await.unwrap();
    assert_eq!(status.phase, Phase::SetUpSecondFactor);
    assert_eq!(status.security_key_prompt, None);
    let waiting = core.clone();
    let setting_up = tokio::spawn(async move { waiting.set_up_security_key().await });

    prompt_shows(&core, KeyPrompt::InsertKey).await;
    key.plug_in().unwrap();
    prompt_shows(&core, KeyPrompt::EnterPin).await;
    core.answer_security_key_pin(pin("1111")).unwrap();
    prompt_shows(&core, KeyPrompt::WrongPin).await;
    assert_eq!(key.retries(), 7, "the key counted the wrong PIN");
    core.answer_security_key_pin(pin("4826")).unwrap();
    touch_when_blinking(&core, &key).await;
    let done = setting_up.await.unwrap().unwrap();
    assert_eq!(done.status.phase, Phase::Unlocked);
    assert_eq!(done.recovery_codes.len(), 10);
    assert_eq!(core.status().security_key_prompt, None);
    assert_eq!(key.retries(), 8, "a right PIN resets the count");
    core.appointments().await.unwrap();

    // The next sign-in is proven with the key: PIN, touch, session.
    core.sign_out().unwrap();
    let status = core.sign_in("frontdesk", password).await.unwrap();
    assert_eq!(status.phase, Phase::SecondFactor);
    assert!(status.mfa_methods.contains(&MfaMethod::Webauthn));
    let waiting = core.clone();
    let verifying = tokio::spawn(async move { waiting.verify_with_security_key().await });
    prompt_shows(&core, KeyPrompt::EnterPin).await;
    core.answer_security_key_pin(pin("4826")).unwrap();
    touch_when_blinking(&core, &key).await;
    let status = verifying.await.unwrap().unwrap();
    assert_eq!(status.phase, Phase::Unlocked);
    assert_eq!(status.user.unwrap().username, "frontdesk");
    assert_eq!(status.security_key_prompt, None);
}

/// Three wrong PINs and the key takes no more until it is plugged in again, which the
/// user is told; a cancelled PIN prompt ends the ceremony; neither ends the sign-in.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_stops_taking_pins_or_a_cancelled_prompt_leaves_the_sign_in_waiting() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Front desk 4").await;
    let key = SoftCtapKey::new("4826").unwrap();
    key.plug_in().unwrap();
    core.set_security_key(ctap_key(&key));
    let status = core
        .sign_in("frontdesk", server.seed.password("frontdesk"))
        .await
        .unwrap();
    assert_eq!(status.phase, Phase::SetUpSecondFactor);

    let refused = core
        .answer_security_key_pin(pin("4826"))
        .unwrap_err()
        .to_api();
    assert_eq!(
        (refused.code, refused.field.as_deref()),
        (ErrorCode::Conflict, Some("pin")),
        "no key asks for a PIN"
    );

    let waiting = core.clone();
    let setting_up = tokio::spawn(async move { waiting.set_up_security_key().await });
    prompt_shows(&core, KeyPrompt::EnterPin).await;
    for (tries, wrong) in ["0000", "1111", "2222"].into_iter().enumerate() {
        core.answer_security_key_pin(pin(wrong)).unwrap();
        if tries < 2 {
            prompt_shows(&core, KeyPrompt::WrongPin).await;
            assert_eq!(usize::from(key.retries()), 7 - tries, "the key counted it");
        }
    }
    let refused = setting_up.await.unwrap().unwrap_err().to_api();
    assert_eq!(
        (refused.code, refused.field.as_deref()),
        (
            ErrorCode::InvalidSecondFactor,
            Some("security_key_pin_paused")
        )
    );
    assert_eq!(key.retries(), 5);
    assert_eq!(core.status().phase, Phase::SetUpSecondFactor);
    assert_eq!(core.status().security_key_prompt, None);

    key.plug_in().unwrap();
    let waiting = core.clone();
    let setting_up = tokio::spawn(async move { waiting.set_up_security_key().await });
    prompt_shows(&core, KeyPrompt::EnterPin).await;
    core.cancel_security_key();
    let refused = setting_up.await.unwrap().unwrap_err().to_api();
    assert_eq!(
        (refused.code, refused.field.as_deref()),
        (
            ErrorCode::InvalidSecondFactor,
            Some("security_key_cancelled")
        )
    );
    assert_eq!(core.status().phase, Phase::SetUpSecondFactor);
    assert_eq!(key.retries(), 5, "a cancelled prompt sent no PIN");

    let waiting = core.clone();
    let setting_up = tokio::spawn(async move { waiting.set_up_security_key().await });
    prompt_shows(&core, KeyPrompt::EnterPin).await;
    core.answer_security_key_pin(pin("4826")).unwrap();
    touch_when_blinking(&core, &key).await;
    let done = setting_up.await.unwrap().unwrap();
    assert_eq!(done.status.phase, Phase::Unlocked);
}
