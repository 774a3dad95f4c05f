//! `backup` and `restore` of the embedded store through the real CLI, beside a serving
//! server: the backup is one moment of the store (taken while registrations go on, it
//! restores to a trail that verifies), opens only with the key-encryption keys, holds no
//! plaintext, refuses to be restored over live data without `--force`, and a backup that was
//! changed or cut off is refused before anything is written.

use std::path::{Path, PathBuf};

use clinicdesk_server::secrets::kek::KeyFileProvider;
use clinicdesk_server::state::embedded_location;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestServer, cli, own_pool, run_cli};

/// Synthetic: the 999 area is never issued.
const CANARY_SSN: &str = "999-77-3141";
const CANARY_FAMILY: &str = "Backupwell";

async fn register(server: &TestServer, token: &str, given: &str, ssn: Option<&str>) -> Uuid {
    let mut fields = json!({
        "name": { "given": given, "family": CANARY_FAMILY },
        "birth_date": "1966-02-11",
    });
    if let Some(ssn) = ssn {
        fields["ssn"] = json!(ssn);
    }
    let (status, body) = server
        .post(
            "/v1/patients",
            Some(token),
            json!({ "fields": fields, "confirm_new_person": true }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

/// `restore --from FROM --data-dir DIR [--force]` with the server's key directory.
fn restore(server: &TestServer, from: &Path, dir: &Path, force: bool) -> std::process::Output {
    let mut cmd = cli(server);
    cmd.args(["restore", "--from"])
        .arg(from)
        .arg("--data-dir")
        .arg(dir);
    if force {
        cmd.arg("--force");
    }
    cmd.output().unwrap()
}

/// The ids of the patients in the embedded store of `dir` (under the server's keys).
async fn patients_in(server: &TestServer, dir: &Path) -> Vec<String> {
    let keys = KeyFileProvider::new(server.key_dir.path().to_owned());
    let pool = own_pool(&embedded_location(dir, &keys).unwrap()).await;
    let ids = sqlx::query_scalar("SELECT id FROM patients ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    ids
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_that_moment_and_refuses_what_was_changed() {
    let server = TestServer::start().await;
    if server.database.is_some() {
        // PostgreSQL is backed up with pg_dump: the command says so and does nothing.
        let out = run_cli(&server, &["backup", "--to", "/tmp/clinicdesk-never.bak"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("pg_dump"), "{}", stderr(&out));
        return;
    }
    let s = server.signed_in(0xBAC, "frontdesk").await;
    let front = s.login.session_token.expose().to_owned();
    let kept = register(&server, &front, "Before", Some(CANARY_SSN)).await;

    // Not into the data directory it backs up.
    let inside = server.dir.path().join("clinic.cdbak");
    let out = run_cli(&server, &["backup", "--to", inside.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("outside the data directory"));
    assert!(!inside.exists());

    // Registrations go on while the backup is taken.
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("clinic.cdbak");
    let backing_up = {
        let mut cmd = cli(&server);
        cmd.args(["backup", "--json", "--to"])
            .arg(&file)
            .arg("--data-dir")
            .arg(server.dir.path());
        std::thread::spawn(move || cmd.output().unwrap())
    };
    let mut during = Vec::new();
    while !backing_up.is_finished() {
        during.push(register(&server, &front, &format!("During{}", during.len()), None).await);
    }
    let out = backing_up.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !during.is_empty(),
        "the server served while the backup was taken"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["files"].as_u64().unwrap() >= 4, "{report}");
    let after = register(&server, &front, "After", None).await;

    // What the file holds is sealed: no canary, and none of the data directory's keys.
    let bytes = std::fs::read(&file).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(bytes.starts_with(b"CLINICDESK-BACKUP 1\n"));
    assert!(!contains(CANARY_SSN.as_bytes()) && !contains(CANARY_FAMILY.as_bytes()));
    for key in ["audit-signing.key", "mfa-seal.key", "device-escrow.key"] {
        let secret = std::fs::read(server.dir.path().join(key)).unwrap();
        assert!(secret.len() >= 32 && !contains(&secret), "{key} is sealed");
    }

    // Restored into a new directory: the moment of the backup, and the trail verifies.
    let target = tempfile::tempdir().unwrap();
    let dir: PathBuf = target.path().join("restored");
    let out = restore(&server, &file, &dir, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("audit trail verified"), "{said}");
    let restored = patients_in(&server, &dir).await;
    assert!(restored.contains(&kept.to_string()));
    assert!(
        !restored.contains(&after.to_string()),
        "taken after the backup"
    );
    // One moment: the registrations during the backup are a prefix of those made.
    let got: Vec<&Uuid> = during
        .iter()
        .filter(|id| restored.contains(&id.to_string()))
        .collect();
    assert_eq!(got, during.iter().take(got.len()).collect::<Vec<_>>());
    for key in ["audit-signing.key", "store-key.json", "tls/ca.pem"] {
        assert_eq!(
            std::fs::read(dir.join(key)).unwrap(),
            std::fs::read(server.dir.path().join(key)).unwrap(),
            "{key} restored as it was"
        );
    }

    // Over a directory holding a database: refused without --force, nothing touched.
    let out = restore(&server, &file, &dir, false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));

    // A changed byte, a cut-off file, or other keys: refused, and the directory kept.
    let damaged = elsewhere.path().join("damaged.cdbak");
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 0x01;
    std::fs::write(&damaged, &flipped).unwrap();
    let cut = elsewhere.path().join("cut.cdbak");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    for bad in [&damaged, &cut] {
        let out = restore(&server, bad, &dir, true);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("does not open"), "{}", stderr(&out));
    }
    let other_keys = tempfile::tempdir().unwrap();
    let out = cli(&server)
        .env("CLINICDESK_KEY_DIR", other_keys.path())
        .args(["restore", "--force", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "other keys do not open it");
    assert_eq!(patients_in(&server, &dir).await, restored, "left as it was");
    // Nothing of a refused restore is left beside it (it may have written key files).
    assert!(!target.path().join("restored.restoring").exists());

    // With --force: restored again, the replaced directory kept beside it.
    let out = restore(&server, &file, &dir, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("kept as"), "{said}");
    let kept_dirs = std::fs::read_dir(target.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("restored.before-restore-")
        })
        .count();
    assert_eq!(kept_dirs, 1);
    assert_eq!(patients_in(&server, &dir).await, restored);
}
