//! A workstation whose data directory is restored from an old backup records new events
//! under sequence numbers its chain already sent. The real server keeps the conflicting
//! event as a tamper alert (never as chain, never dropped), and the clinic's admin sees it
//! in the app, by workstation. The workstation re-chains its waiting events onto the
//! server's copy of its chain, so the conflicting event reaches the log too (under its own
//! id) and what it records afterwards is stored as usual.

use std::path::Path;
use std::sync::Arc;

use clinicdesk_app::core::Core;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_tests::{ServerProcess, app_config};

fn outbox_files(dir: &Path) -> Vec<String> {
    ["outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

/// Copies the outbox (closed: no core holds it) from `from` to `to`, replacing what is there.
fn copy_outbox(from: &Path, to: &Path) {
    for (src, dst) in outbox_files(from).into_iter().zip(outbox_files(to)) {
        let _ = std::fs::remove_file(&dst);
        if Path::new(&src).exists() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

async fn drain(core: &Core) {
    while core.upload_once().await.unwrap() > 0 {}
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workstation_restored_from_an_old_backup_shows_up_as_a_tamper_alert_and_rejoins_the_log()
{
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let config = app_config(&server, app_dir.path(), None);
    let start =
        || Arc::new(Core::new(config.clone(), clinicdesk_app::os::clock::system()).unwrap());
    let password = server.seed.password("frontdesk");

    // Events recorded, not yet uploaded, when the backup is taken.
    let backed_up = {
        let core = start();
        core.enroll(&server.seed.enrollment_code, "Front desk 5")
            .await
            .unwrap();
        server.sign_in(&core, "frontdesk", password).await.unwrap();
        core.appointments().await.unwrap();
        core.lock();
        core.status().outbox_pending.unwrap()
    };
    assert!(
        backed_up >= 3,
        "sign-in, schedule and lock are in the outbox"
    );
    copy_outbox(app_dir.path(), backup.path());

    // The workstation goes on: everything uploads, and more is recorded and uploaded.
    {
        let core = start();
        drain(&core).await;
        server.sign_in(&core, "frontdesk", password).await.unwrap();
        core.appointments().await.unwrap();
        core.lock();
        drain(&core).await;
    }
    let device_id = server.devices()[0].0;
    assert!(
        server
            .audit_events()
            .iter()
            .any(|e| e.event.device_id == device_id && e.event.device_seq == backed_up + 1)
    );

    // Restored from the backup: its next event reuses the sequence after the backup's.
    copy_outbox(backup.path(), app_dir.path());
    let core = start();
    server.sign_in(&core, "frontdesk", password).await.unwrap();
    let stored_before = server.audit_events().len();
    // The receipt names the conflict; the server holds the workstation's event (with its
    // signature) as the alert, and the workstation re-chains it onto the server's head.
    let pending = core.status().outbox_pending.unwrap();
    assert!(
        pending > backed_up,
        "the restored events and the new sign-in wait"
    );
    assert_eq!(
        core.upload_once().await.unwrap(),
        usize::try_from(pending).unwrap()
    );
    let rechained = core.status().outbox_pending.unwrap();
    assert!(rechained >= 1 && rechained <= pending - backed_up);
    drain(&core).await;
    assert_eq!(core.status().outbox_pending, Some(0));
    let stored = server.audit_events();
    assert_eq!(
        stored.len(),
        stored_before + usize::try_from(rechained).unwrap(),
        "every re-chained event is in the log once"
    );
    // The alert's event is in the log under its own id, at a later place in the chain.
    let db = server.db();
    let alerted: Vec<(String, i64)> = db
        .prepare("SELECT event_json, device_seq FROM audit_alerts")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(alerted.len(), 1);
    let original: clinicdesk_protocol::audit::AuditEvent =
        serde_json::from_str(&alerted[0].0).unwrap();
    let in_log: Vec<_> = stored
        .iter()
        .filter(|s| s.event.id == original.id)
        .collect();
    assert_eq!(in_log.len(), 1);
    assert!(in_log[0].event.device_seq > original.device_seq);
    assert_eq!(in_log[0].event.action, original.action);
    assert_eq!(in_log[0].event.occurred_at_ms, original.occurred_at_ms);

    // From now on the workstation's chain continues the server's: no new alert.
    core.appointments().await.unwrap();
    drain(&core).await;
    assert_eq!(core.status().outbox_pending, Some(0));
    assert!(server.audit_events().len() > stored.len());

    // The admin, on this workstation, sees the alert by the workstation's name.
    core.sign_out().unwrap();
    server
        .sign_in(&core, "admin", server.seed.password("admin"))
        .await
        .unwrap();
    let alerts = core.audit_alerts().await.unwrap();
    let forks: Vec<_> = alerts
        .tamper
        .iter()
        .map(|t| (t.device_id, t.device_seq, t.kind.as_str()))
        .collect();
    assert_eq!(forks, vec![(device_id, backed_up + 1, "fork")]);
    // The alert is itself in the log: a server event naming the refused event's hash.
    let logged: Vec<_> = server
        .server_events()
        .into_iter()
        .filter(|s| Some(s.event.id) == alerts.tamper[0].logged_event_id)
        .map(|s| (s.event.action, s.event.resource_id, s.event.fields))
        .collect();
    assert_eq!(
        logged,
        vec![(
            AuditAction::TamperAlert,
            alerts.tamper[0].hash.to_hex(),
            vec!["fork".to_owned()]
        )]
    );
    // What the server stored as the chain (the original's, then the re-chained events and
    // what followed) verifies.
    clinicdesk_tests::verify_chains(&server);
    let names: Vec<_> = core
        .devices()
        .await
        .unwrap()
        .devices
        .into_iter()
        .filter(|d| d.id == device_id)
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["Front desk 5".to_owned()]);
}
