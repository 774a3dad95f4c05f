//! A first password from the app core against the real server process: an admin creates a
//! user on a workstation; at their first sign-in the user must choose their own password
//! before the second factor, and their encrypted cache is bound to the password they chose.
//! The admin's access review, saved from the app, lists them.

use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::Phase;
use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::NewUser;
use clinicdesk_tests::authenticator::pass_second_factor;
use clinicdesk_tests::{ServerProcess, code_of, enrolled_core};

const FIRST: &str = "lilac-beacon-thimble-26";
const OWN: &str = "granite-willow-comet-83";

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_chooses_their_own_password_at_first_sign_in() {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Front desk 2").await;
    let admin_password = server.seed.password("admin").to_owned();
    server
        .sign_in(&core, "admin", &admin_password)
        .await
        .unwrap();
    core.create_user(NewUser {
        username: "riley.desk".into(),
        display_name: "Riley Desk (synthetic)".into(),
        role: Role::FrontDesk,
        password: FIRST.into(),
    })
    .await
    .unwrap();
    // The admin saves the access review: the new user is listed, with no sign-in yet.
    let downloads = tempfile::tempdir().unwrap();
    let saved = core
        .export_access_review(&downloads.path().join("Downloads"))
        .await
        .unwrap();
    let csv = std::fs::read_to_string(&saved).unwrap();
    assert!(
        csv.starts_with("username,display_name,role,phi_access,status"),
        "{csv}"
    );
    let riley = csv.lines().find(|l| l.starts_with("riley.desk,")).unwrap();
    assert!(
        riley.contains("front_desk") && riley.contains("active"),
        "{riley}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by this OS user only");
    }
    core.switch_user();

    let status = core.sign_in("riley.desk", FIRST).await.unwrap();
    assert_eq!(status.phase, Phase::ChooseNewPassword);
    assert_eq!(
        code_of(core.appointments().await.unwrap_err()),
        ErrorCode::Unauthenticated,
        "no session before the user's own password and second factor"
    );
    // A weak choice is refused and the step keeps waiting.
    let weak = core.choose_new_password("password1234").await.unwrap_err();
    assert_eq!(code_of(weak), ErrorCode::WeakPassword);
    assert_eq!(core.status().phase, Phase::ChooseNewPassword);
    let status = core.choose_new_password(OWN).await.unwrap();
    assert_eq!(status.phase, Phase::SetUpSecondFactor);
    let status = pass_second_factor(&core, &server.authenticator, "riley.desk", status)
        .await
        .unwrap();
    assert_eq!(status.phase, Phase::Unlocked);
    core.appointments().await.unwrap();

    // The cache opens with the password the user chose (offline, checked locally), not
    // with the one the admin set.
    core.lock();
    server.stop();
    assert_eq!(
        code_of(core.unlock(FIRST).await.unwrap_err()),
        ErrorCode::InvalidCredentials
    );
    let status = core.unlock(OWN).await.unwrap();
    assert_eq!(status.phase, Phase::Unlocked);
    assert!(status.offline_session);
}
