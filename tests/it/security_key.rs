//! The WebAuthn second factor run by the app's core against the real server process: a
//! first sign-in registers the user's security key, a later one is proven with it, and a
//! colleague's key is refused with the sign-in left waiting. The key is the software
//! passkey of `webauthn-authenticator-rs` (feature `soft-authenticator`): no USB security
//! key can be plugged into this machine, so the hardware backend is not exercised here.

use std::sync::Arc;

use clinicdesk_app::security_key::SoftSecurityKey;
use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::Phase;
use clinicdesk_protocol::mfa::MfaMethod;
use clinicdesk_tests::{ServerProcess, enrolled_core};

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
