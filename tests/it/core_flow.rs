//! The app core (no webview) against the real server over TLS, with the real keychain and
//! a real SQLCipher cache: enroll, sign in, view, upload, lock, unlock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clinicdesk_app::core::Core;
use clinicdesk_app::os::clock::ManualClock;
use clinicdesk_protocol::ErrorCode;
use clinicdesk_protocol::app::{Phase, SearchSource};
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_tests::authenticator::pass_second_factor;
use clinicdesk_tests::{ServerProcess, app_config, code_of, files_contain, signature_valid};

#[tokio::test(flavor = "multi_thread")]
async fn enroll_sign_in_view_upload_lock_unlock() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = Arc::new(
        Core::new(
            app_config(&server, app_dir.path(), Some(Duration::from_secs(600))),
            clinicdesk_app::os::clock::system(),
        )
        .unwrap(),
    );
    assert_eq!(core.status().phase, Phase::NotEnrolled);
    assert_eq!(core.status().online, None, "no contact with the server yet");
    assert_eq!(
        code_of(core.sign_in("clinician", "x").await.unwrap_err()),
        ErrorCode::NotEnrolled
    );

    let bad = core.enroll("WRONG-CODE-0000", "Room 1").await.unwrap_err();
    assert_eq!(code_of(bad), ErrorCode::InvalidEnrollmentCode);
    let status = core
        .enroll(&server.seed.enrollment_code, "Room 1")
        .await
        .unwrap();
    assert_eq!(status.phase, Phase::SignedOut);
    assert_eq!(status.online, Some(true));
    assert!(app_dir.path().join("server-ca.pem").exists(), "CA pinned");

    let wrong = core
        .sign_in("clinician", "not-the-password")
        .await
        .unwrap_err();
    assert_eq!(code_of(wrong), ErrorCode::InvalidCredentials);
    let password = server.seed.password("clinician").to_owned();
    // The password alone opens nothing: the first sign-in sets up a second factor.
    let status = core.sign_in("clinician", &password).await.unwrap();
    assert_eq!(status.phase, Phase::SetUpSecondFactor);
    assert_eq!(
        code_of(core.appointments().await.unwrap_err()),
        ErrorCode::Unauthenticated
    );
    let status = pass_second_factor(&core, &server.authenticator, "clinician", status)
        .await
        .unwrap();
    assert_eq!(status.phase, Phase::Unlocked);

    let list = core.appointments().await.unwrap();
    assert_eq!(list.appointments.len(), 5);
    let first = list.appointments[0].clone();
    let patient = core.open_patient(first.patient_id).await.unwrap();
    assert_eq!(patient.name, first.patient_name);
    assert!(
        patient.clinical.is_some(),
        "clinicians read the clinical summary"
    );
    // login, schedule view, patient view
    assert_eq!(core.status().outbox_pending, Some(3));

    let mut acknowledged = 0;
    while acknowledged < 3 {
        acknowledged += core.upload_once().await.unwrap();
    }
    assert_eq!(core.status().outbox_pending, Some(0));
    let events = server.audit_events();
    let devices = server.devices();
    assert_eq!(devices.len(), 1);
    let (device_id, device_key) = devices[0];
    let view = events
        .iter()
        .find(|e| e.event.action == AuditAction::View && e.event.patient_id == Some(patient.id))
        .expect("the patient view reached the server");
    assert_eq!(view.event.device_id, device_id);
    assert_eq!(view.event.actor_user_id, server.user_id("clinician"));
    assert!(signature_valid(&device_key, view));
    assert!(view.event.fields.contains(&"allergies".to_owned()));

    // Lock: PHI commands refuse, the cache is closed and holds no plaintext.
    let status = core.lock();
    assert_eq!(status.phase, Phase::Locked);
    // Locking again (a second OS signal, a double Ctrl+L) changes nothing.
    let again = core.lock();
    assert_eq!((again.phase, again.user), (Phase::Locked, status.user));
    assert_eq!(
        code_of(core.open_patient(patient.id).await.unwrap_err()),
        ErrorCode::Locked
    );
    assert_eq!(
        code_of(core.appointments().await.unwrap_err()),
        ErrorCode::Locked
    );
    let cache_db = core.users().cache_path(server.user_id("clinician"));
    assert!(cache_db.exists(), "lock keeps the user's cache");
    let mut files: Vec<_> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", cache_db.display())))
        .collect();
    files.extend(
        ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| PathBuf::from(format!("{}{suffix}", core.paths().outbox.display()))),
    );
    for needle in [
        patient.name.expose().as_str(),
        patient.phone.expose().as_str(),
    ] {
        assert_eq!(files_contain(&files, needle), None, "plaintext PHI on disk");
    }

    // Events recorded before the lock (the lock itself included) upload while locked.
    assert_eq!(core.status().outbox_pending, Some(1));
    assert_eq!(core.upload_once().await.unwrap(), 1);
    assert_eq!(core.status().outbox_pending, Some(0));

    // Unlock needs the same user's password; within the grant of the sign-in's second
    // factor it asks for no second factor.
    let wrong = core.unlock("not-the-password").await.unwrap_err();
    assert_eq!(code_of(wrong), ErrorCode::InvalidCredentials);
    assert_eq!(core.status().phase, Phase::Locked);
    assert_eq!(core.unlock(&password).await.unwrap().phase, Phase::Unlocked);
    // The lock and unlock were recorded and chain on from the earlier events.
    while core.upload_once().await.unwrap() > 0 {}
    let actions: Vec<AuditAction> = server
        .audit_events()
        .iter()
        .map(|e| e.event.action)
        .collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::Login,
            AuditAction::View,
            AuditAction::View,
            AuditAction::Lock,
            AuditAction::Unlock
        ]
    );
}

/// Idle time is kept on the core's monotonic clock, so the test moves that clock instead
/// of sleeping: the same deadline, the same checks, no wall-clock waits.
#[tokio::test(flavor = "multi_thread")]
async fn idle_deadline_locks_and_activity_defers_it() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    // 2026-11-23 12:00 UTC; the wall clock only stamps the audit events here.
    let clock = ManualClock::new(1_795_435_200_000);
    let core = Core::new(
        app_config(&server, app_dir.path(), Some(Duration::from_millis(1500))),
        Arc::new(clock.clone()),
    )
    .unwrap();
    core.enroll(&server.seed.enrollment_code, "Room 2")
        .await
        .unwrap();
    server
        .sign_in(&core, "frontdesk", server.seed.password("frontdesk"))
        .await
        .unwrap();
    let locked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = locked.clone();
    core.set_lock_listener(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
    assert!(!core.lock_if_idle(), "fresh session is not idle");
    // Activity keeps pushing the deadline out.
    for _ in 0..4 {
        clock.advance(Duration::from_millis(500));
        core.activity();
        assert!(!core.lock_if_idle());
    }
    // The deadline is 1.5 s after the last activity: not a millisecond before it.
    clock.advance(Duration::from_millis(1499));
    assert!(!core.lock_if_idle(), "locked before the idle deadline");
    clock.advance(Duration::from_millis(1));
    assert!(core.lock_if_idle(), "idle lock never came");
    assert!(locked.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(core.status().phase, Phase::Locked);

    // A suspend with no OS lock signal: the monotonic clock stood still while the machine
    // slept, the wall clock did not; on resume the session locks.
    core.unlock(server.seed.password("frontdesk"))
        .await
        .unwrap();
    assert_eq!(core.status().phase, Phase::Unlocked);
    clock.suspend(Duration::from_secs(3600));
    assert!(core.lock_if_idle(), "a long sleep did not lock");
    assert_eq!(core.status().phase, Phase::Locked);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_search_is_clinic_wide_online_from_the_cache_offline_and_audited_per_patient_shown()
 {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = clinicdesk_tests::enrolled_core(&server, app_dir.path(), "Front desk 2").await;
    server
        .sign_in(&core, "frontdesk", server.seed.password("frontdesk"))
        .await
        .unwrap();
    // Two charts opened, so two patients are in this user's cache.
    let list = core.appointments().await.unwrap();
    let first = core
        .open_patient(list.appointments[0].patient_id)
        .await
        .unwrap();
    core.open_patient(list.appointments[1].patient_id)
        .await
        .unwrap();
    assert!(!first.mrn.expose().is_empty(), "the server sends the MRN");
    while core.upload_once().await.unwrap() > 0 {}

    let by_mrn = core.search_patients(first.mrn.expose()).await.unwrap();
    // Online, the server searched the whole clinic, and the screen is told so.
    assert_eq!(by_mrn.source, SearchSource::Clinic);
    assert_eq!(by_mrn.patients.len(), 1);
    assert_eq!(by_mrn.patients[0].id, first.id);
    let word = first.name.expose().split(' ').next_back().unwrap()[..3].to_owned();
    let by_name = core.search_patients(&word).await.unwrap();
    assert!(by_name.patients.iter().any(|p| p.id == first.id));
    let shown = by_mrn.patients.len() + by_name.patients.len();
    // Nothing shown, nothing recorded; not a search, refused by name.
    assert!(
        core.search_patients("zzzz")
            .await
            .unwrap()
            .patients
            .is_empty()
    );
    assert_eq!(
        code_of(core.search_patients("  ").await.unwrap_err()),
        ErrorCode::BadRequest
    );
    assert_eq!(
        core.status().outbox_pending,
        Some(u64::try_from(shown).unwrap())
    );
    while core.upload_once().await.unwrap() > 0 {}
    let listed: Vec<_> = server
        .audit_events()
        .into_iter()
        .filter(|e| e.event.route == "patient_search")
        .collect();
    assert_eq!(listed.len(), shown);
    assert!(listed.iter().all(|e| e.event.action == AuditAction::View
        && e.event.fields == ["name", "birth_date", "mrn"]
        && e.event.patient_id.is_some()
        && !e.event.offline));

    // With the server gone the cache still finds the patient.
    server.stop();
    let offline = core
        .search_patients(first.birth_date.expose())
        .await
        .unwrap();
    assert_eq!(offline.source, SearchSource::ThisWorkstation);
    assert!(offline.patients.iter().any(|p| p.id == first.id));
    // Locked: no search at all.
    core.lock();
    assert_eq!(
        code_of(core.search_patients(first.mrn.expose()).await.unwrap_err()),
        ErrorCode::Locked
    );
}
