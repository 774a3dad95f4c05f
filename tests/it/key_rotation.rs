//! Rotating the server's audit key while a workstation keeps working: the real server
//! process, its operator's commands, and the app core with the real keychain and SQLCipher
//! files.

use clinicdesk_protocol::audit::AuditAction;
use clinicdesk_protocol::export::ClinicKeys;
use clinicdesk_protocol::rotation::KeyRotation;
use clinicdesk_tests::{ServerProcess, enrolled_core};

/// The key the workstation pinned, as its `enrollment.json` holds it.
fn pinned(app_dir: &std::path::Path) -> String {
    let enrollment: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app_dir.join("enrollment.json")).unwrap()).unwrap();
    enrollment["audit_public_key"].as_str().unwrap().to_owned()
}

/// The operator rotates the audit key between two of a workstation's uploads (server
/// stopped, `audit rotate-key`, started again). The next receipt is signed by the new key:
/// the app follows the record the old key signed for it, forgets its sent events as usual
/// and pins the new key. The trail that spans both keys still verifies in full (`audit
/// verify`), and so does an export of it against the keys `audit keys` prints, which list
/// the rotation; the clinic's own trail records the rotation too. Without the record, the new key's receipts would be refused and the
/// workstation's outbox would never empty.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_follows_a_rotated_audit_key_and_the_trail_across_it_verifies() {
    let mut server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Front desk 1").await;
    let password = server.seed.password("frontdesk").to_owned();
    server.sign_in(&core, "frontdesk", &password).await.unwrap();
    core.appointments().await.unwrap();
    while core.upload_once().await.unwrap() > 0 {}
    let first_key = pinned(app_dir.path());

    server.stop();
    let rotation: KeyRotation =
        serde_json::from_slice(&server.operator(&["audit", "rotate-key"])).unwrap();
    assert_eq!(rotation.old_key, first_key);
    assert_ne!(rotation.new_key, first_key);
    // The clinic's trail says where the old key's period ended.
    let noted: Vec<_> = server
        .server_events()
        .into_iter()
        .filter(|e| e.event.action == AuditAction::Update && e.event.resource_type == "AuditKey")
        .map(|e| {
            (
                e.event.resource_id,
                e.event.occurred_at_ms >= rotation.at_ms,
            )
        })
        .collect();
    assert_eq!(noted, [(rotation.new_key.clone(), true)]);
    server.restart();

    // More work after the rotation: its receipts come signed by the new key.
    core.appointments().await.unwrap();
    assert!(core.status().outbox_pending.unwrap() > 0);
    while core.upload_once().await.unwrap() > 0 {}
    assert_eq!(core.status().outbox_pending, Some(0), "every event settled");
    assert_eq!(pinned(app_dir.path()), rotation.new_key, "the pin moved");

    // The trail verifies across the rotation: server events and checkpoints of each key.
    server.audit_verify();
    let keys: ClinicKeys = serde_json::from_slice(&server.operator(&["audit", "keys"])).unwrap();
    assert_eq!(keys.server, rotation.new_key);
    assert_eq!(keys.rotations, [rotation]);
    let out = tempfile::tempdir().unwrap();
    let keys_file = out.path().join("keys.json");
    std::fs::write(&keys_file, serde_json::to_vec(&keys).unwrap()).unwrap();
    let bundle = out.path().join("trail.jsonl");
    std::fs::write(
        &bundle,
        server.operator(&["audit", "export", "--format", "jsonl"]),
    )
    .unwrap();
    let (passed, said) = ServerProcess::verify_export(&keys_file, &bundle);
    assert!(passed, "{said}");
    // With the rotation left out of the keys, the events the old key signed do not verify.
    let mut without = keys.clone();
    without.rotations.clear();
    std::fs::write(&keys_file, serde_json::to_vec(&without).unwrap()).unwrap();
    let (passed, said) = ServerProcess::verify_export(&keys_file, &bundle);
    assert!(!passed, "{said}");
}
