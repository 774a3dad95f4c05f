//! The app's data directory (its outbox and the user's cache) on a small filesystem that
//! fills up: a chart the app cannot record the view of is not shown (fail closed), the
//! refusal says why (`storage_full` on `workstation`), and once space returns the same core
//! shows it again, and every event it recorded reaches the server once.

use std::sync::Arc;

use clinicdesk_app::core::Core;
use clinicdesk_protocol::ErrorCode;
use clinicdesk_tests::{ServerProcess, SmallDisk, app_config, verify_chains};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_on_the_workstation_shows_no_chart_it_cannot_audit_and_recovers() {
    let server = ServerProcess::start();
    let disk = SmallDisk::mount(64);
    let app_dir = disk.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    let core = Arc::new(
        Core::new(
            app_config(&server, &app_dir, None),
            clinicdesk_app::os::clock::system(),
        )
        .unwrap(),
    );
    core.enroll(&server.seed.enrollment_code, "Exam room 3")
        .await
        .unwrap();
    server
        .sign_in(&core, "clinician", server.seed.password("clinician"))
        .await
        .unwrap();
    let patient = core.appointments().await.unwrap().appointments[0].patient_id;
    core.open_patient(patient).await.unwrap();

    let ballast = disk.fill();
    // A chart is shown only after its view is committed to the outbox: with no room, none
    // is. (An attempt may still find room in a page the database already holds.)
    let mut refused = None;
    for _ in 0..20 {
        match core.open_patient(patient).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e.to_api());
                break;
            }
        }
    }
    let refused = refused.expect("charts were still shown with the disk full");
    assert_eq!(
        (refused.code, refused.field.as_deref()),
        (ErrorCode::StorageFull, Some("workstation"))
    );

    // Space returns: the same session shows the chart again, and uploads everything.
    std::fs::remove_file(&ballast).unwrap();
    core.open_patient(patient).await.unwrap();
    while core.upload_once().await.unwrap() > 0 {}
    assert_eq!(core.status().outbox_pending, Some(0));
    let stored = verify_chains(&server);
    assert_eq!(
        stored.values().copied().collect::<Vec<_>>(),
        vec![core.outbox_last_seq().unwrap()],
        "every event the workstation signed is on the server once"
    );
    core.lock();
    drop(core);
}
