//! A signed-in user changes their own password through the app core against the real
//! server process, with the real keychain and SQLCipher cache: a wrong current password or
//! a weak new one changes nothing; a good one changes it on the server, locks the app, and
//! the same encrypted cache (and the user's copy of the recovery key) then opens with the
//! new password only, online and offline.

use clinicdesk_app::secrets::recovery_key::{self, Found};
use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::Phase;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_tests::{ServerProcess, code_of, enrolled_core};

const NEW: &str = "juniper-anchor-velvet-61";

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_user_changes_their_password_and_their_cache_follows_it() {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Front desk 3").await;
    let old = server.seed.password("frontdesk").to_owned();
    server.sign_in(&core, "frontdesk", &old).await.unwrap();
    let list = core.appointments().await.unwrap();

    // Refusals change nothing: still signed in, old password still the password.
    let wrong = core.change_password("not-the-password", NEW).await;
    assert_eq!(code_of(wrong.unwrap_err()), ErrorCode::InvalidCredentials);
    let weak = core.change_password(&old, "password").await;
    assert_eq!(code_of(weak.unwrap_err()), ErrorCode::WeakPassword);
    let same = core.change_password(&old, &old).await;
    assert_eq!(code_of(same.unwrap_err()), ErrorCode::WeakPassword);
    assert_eq!(core.status().phase, Phase::Unlocked);
    assert!(
        server
            .server_events()
            .iter()
            .all(|e| e.event.action != AuditAction::PasswordChanged)
    );

    let status = core.change_password(&old, NEW).await.unwrap();
    assert_eq!(status.phase, Phase::Locked, "the server ended the session");
    assert_eq!(
        server
            .server_events()
            .iter()
            .filter(|e| e.event.action == AuditAction::PasswordChanged)
            .count(),
        1
    );
    // The user's copy of the workstation's recovery key moved to the new password too.
    let copies = core.users().recovery_copies().unwrap();
    assert_eq!(copies.len(), 1);
    for (password, opens) in [(old.as_str(), false), (NEW, true)] {
        let found = recovery_key::open_user_copy(&copies, password).unwrap();
        assert_eq!(matches!(found, Found::Opened(_)), opens, "{opens}");
    }
    // Online: the old password is refused by the server, the new one (with a second
    // factor again: the grants ended too) opens the same cache.
    let refused = core.unlock(&old).await.unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::InvalidCredentials);
    let status = server.unlock(&core, "frontdesk", NEW).await.unwrap();
    assert_eq!(status.phase, Phase::Unlocked);
    // Offline: the cache itself takes only the new password, and it is the same cache: it
    // still holds the schedule fetched before the change (a fresh one would hold nothing).
    core.lock();
    server.stop();
    let refused = core.unlock(&old).await.unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::InvalidCredentials);
    core.unlock(NEW).await.unwrap();
    assert!(core.status().offline_session);
    assert_eq!(core.appointments().await.unwrap(), list);
}
