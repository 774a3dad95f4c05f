//! "A server restored from an older backup is caught, and loses nothing a workstation still
//! holds": the real server binary is backed up, a workstation (the real app core) records
//! and uploads more, so the server acknowledges events the backup does not have and the
//! workstation forgets them; the server is restored from the backup with the operator's
//! `restore`. On its next upload the workstation sends back the receipt it holds; the server
//! finds its store no longer holds what that receipt says, records a `rollback` tamper
//! alert the clinic's admin sees, and takes the workstation's chain on from that receipt, so
//! what the workstation recorded since is stored and acknowledged (before, its uploads were
//! answered with the restored head for ever and its outbox never emptied). The events the
//! server lost stay lost: `audit verify` passes and names them as a gap.

use std::sync::Arc;

use clinicdesk_app::core::Core;
use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_tests::{ServerProcess, app_config};
use uuid::Uuid;

/// Uploads until the outbox is empty or an upload settles nothing; at most 20 rounds.
async fn drain(core: &Core) {
    for _ in 0..20 {
        if core.upload_once().await.unwrap() == 0 {
            break;
        }
    }
}

/// The device's stored sequence numbers, in order.
fn stored_seqs(server: &ServerProcess, device: Uuid) -> Vec<u64> {
    server
        .audit_events()
        .iter()
        .filter(|e| e.event.device_id == device)
        .map(|e| e.event.device_seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_restored_from_an_older_backup_raises_a_rollback_alert_and_stores_what_the_workstation_holds()
 {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("clinic.backup");
    let backup = backup.to_str().unwrap();
    let core = Arc::new(
        Core::new(
            app_config(&server, app_dir.path(), None),
            clinicdesk_app::os::clock::system(),
        )
        .unwrap(),
    );
    core.enroll(&server.seed.enrollment_code, "Exam room 2")
        .await
        .unwrap();
    let password = server.seed.password("clinician");
    server.sign_in(&core, "clinician", password).await.unwrap();
    let today = core.appointments().await.unwrap();
    let patient = today.appointments[0].patient_id;
    drain(&core).await;
    assert_eq!(core.status().outbox_pending, Some(0));

    server.operator(&["backup", "--to", backup]);
    let device = server.devices()[0].0;
    let in_backup = stored_seqs(&server, device).len() as u64;

    // After the backup: views the server acknowledges, and the workstation forgets.
    core.open_patient(patient).await.unwrap();
    core.open_patient(patient).await.unwrap();
    drain(&core).await;
    assert_eq!(core.status().outbox_pending, Some(0));
    let acknowledged = core.outbox_last_seq().unwrap();
    assert!(acknowledged > in_backup);

    // The operator restores the backup: the server's copy of the chain ends earlier again.
    server.stop();
    server.operator(&["restore", "--from", backup, "--force"]);
    server.restart();
    assert_eq!(stored_seqs(&server, device).len() as u64, in_backup);

    // The workstation goes on; its upload carries the receipt it holds.
    core.open_patient(patient).await.unwrap();
    drain(&core).await;
    assert_eq!(
        core.status().outbox_pending,
        Some(0),
        "what the workstation recorded after the restore must be stored and acknowledged"
    );
    let last = core.outbox_last_seq().unwrap();
    let expected: Vec<u64> = (1..=in_backup).chain(acknowledged + 1..=last).collect();
    assert_eq!(
        stored_seqs(&server, device),
        expected,
        "the chain goes on from the receipt's head; only what the restore lost is missing"
    );

    // Once: the next upload holds the new receipt, and raises nothing.
    core.open_patient(patient).await.unwrap();
    drain(&core).await;
    assert_eq!(core.status().outbox_pending, Some(0));

    // The admin sees it, by workstation, with the last event the server had acknowledged.
    core.sign_out().unwrap();
    server
        .sign_in(&core, "admin", server.seed.password("admin"))
        .await
        .unwrap();
    let alerts = core.audit_alerts().await.unwrap();
    let seen: Vec<_> = alerts
        .tamper
        .iter()
        .map(|t| (t.device_id, t.device_seq, t.kind.as_str()))
        .collect();
    assert_eq!(seen, vec![(device, acknowledged, "rollback")]);
    // The alert is itself in the log: a server event of no user, naming the held receipt.
    let logged: Vec<_> = server
        .server_events()
        .into_iter()
        .filter(|s| Some(s.event.id) == alerts.tamper[0].logged_event_id)
        .map(|s| {
            (
                s.event.action,
                s.event.actor_user_id,
                s.event.resource_id,
                s.event.fields,
            )
        })
        .collect();
    assert_eq!(
        logged,
        vec![(
            AuditAction::TamperAlert,
            Uuid::nil(),
            alerts.tamper[0].hash.to_hex(),
            vec!["rollback".to_owned()]
        )]
    );
    // The verifier checks the alert's evidence (the server's own signed receipt) and names
    // what the restore lost as a gap in the workstation's chain.
    let report = server.audit_verify();
    assert!(report.contains("1 tamper alert(s)"), "{report}");
    assert!(
        report.contains(&format!(
            "device {device} is missing {} to {acknowledged}",
            in_backup + 1
        )),
        "{report}"
    );

    // `restore` kept the replaced data directory beside it: not the test's to leave behind.
    let data_dir = server.data_dir.path().to_owned();
    let name = data_dir.file_name().unwrap().to_string_lossy().into_owned();
    for entry in std::fs::read_dir(data_dir.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file.starts_with(&format!("{name}.before-restore-")) {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
}
