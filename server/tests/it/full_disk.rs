//! The server's data directory on a small filesystem that fills up (a tmpfs the test mounts:
//! `cargo xtask test` runs as root on these machines, as CI does). While it is full, PHI reads
//! and audit uploads are refused with `503 storage_full` (fail closed: no PHI answered
//! without its audit event stored), the server stays up and its health check says why; when
//! space returns it serves again by itself, and nothing is lost: every PHI answer has its
//! event, the refused upload is stored once when sent again, and the trail verifies. The
//! embedded store only: a PostgreSQL server's disk is the database's (its refused writes map
//! to the same `storage_full`, untested here), so the PostgreSQL leg skips this module.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use clinicdesk_protocol::wire::Health;
use clinicdesk_server::audit::key::PublicKey;
use serde_json::{Value, json};

use crate::audit_log::{chain, upload};
use crate::harness::{SignedIn, TestServer, verify_trail};

/// A tmpfs of its own, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> SmallDisk {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs failed (this test needs root, as `cargo xtask test` and \
             CI run): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir,
            _parent: parent,
        }
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a ballast file until the filesystem refuses more; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("ballast");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [64 * 1024, 4096, 1] {
            let bytes = vec![0u8; chunk];
            while file.write_all(&bytes).is_ok() {}
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// `GET /healthz`: its status and answer.
async fn health(server: &TestServer) -> (u16, Health) {
    let resp = server
        .client()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// How many `view` events the server stored (its own, for the PHI it answered).
async fn views(server: &TestServer) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM audit_events e JOIN devices d ON d.id = e.device_id
         WHERE d.kind = 'server' AND e.action = 'view'",
    )
    .fetch_one(&server.owner_pool().await)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_full_disk_refuses_phi_and_uploads_reports_itself_and_recovers_with_nothing_lost() {
    let disk = SmallDisk::mount(64);
    let server = TestServer::start_embedded_in(tempfile::tempdir_in(disk.path()).unwrap()).await;
    let SignedIn { device, login, .. } = server.signed_in(0xA, "clinician").await;
    let token = login.session_token.expose();
    let events = chain(&device, login.user.user_id, 4);

    let (status, said) = health(&server).await;
    assert_eq!(
        (status, said.status.as_str(), said.problem),
        (200, "ok", None)
    );
    upload(&server, &device, &[&events[0], &events[1]]).await;
    // A day's schedule is one `view` event per patient on it: this many per answer.
    let views_before = views(&server).await;
    let (status, _) = server.get("/v1/appointments", token).await;
    assert_eq!(status, 200);
    let per_answer = views(&server).await - views_before;
    assert!(per_answer > 0);
    let views_before = views_before + per_answer;
    let mut answered = 0i64;

    // The worst case: the write-ahead log emptied into the database, so the next write
    // needs new room; then the disk fills.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&server.owner_pool().await)
        .await
        .unwrap();
    let ballast = disk.fill();

    let (status, said) = health(&server).await;
    assert_eq!(
        (status, said.status.as_str(), said.problem.as_deref()),
        (503, "unavailable", Some("storage_full"))
    );
    // A PHI read's event cannot be stored: no PHI. (The first attempts may still find room
    // in pages already allocated; each answered read must then have its event.)
    let mut refused = 0;
    for _ in 0..50 {
        let (status, body) = server.get("/v1/appointments", token).await;
        match status {
            200 => answered += 1,
            503 => {
                assert_eq!(
                    body,
                    json!({ "code": "storage_full" }),
                    "the refusal carries no PHI"
                );
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("a read on a full disk answered {other}: {body}"),
        }
    }
    assert_eq!(refused, 3, "reads on a full disk were not refused");
    let (status, body) = server
        .post(
            "/v1/audit/batches",
            None,
            json!({ "device_id": device.id, "events": [&events[2], &events[3]] }),
        )
        .await;
    assert_eq!(
        (status, body),
        (503, json!({ "code": "storage_full" })),
        "an upload is refused whole"
    );
    let (status, _) = health(&server).await;
    assert_eq!(status, 503, "the server is up and says why");

    // Space returns: the server serves again by itself, on every pooled connection (a
    // connection the failed writes left inside a transaction would fail each write it got).
    std::fs::remove_file(&ballast).unwrap();
    for _ in 0..12 {
        let (status, body) = server.get("/v1/appointments", token).await;
        assert_eq!(status, 200, "{body}");
        answered += 1;
    }
    let (status, said) = health(&server).await;
    assert_eq!((status, said.problem), (200, None));
    let receipt = upload(&server, &device, &[&events[2], &events[3]]).await;
    assert_eq!(receipt.highest_contiguous_seq, 4);

    // Nothing lost, nothing answered without its event; the trail verifies.
    assert_eq!(
        views(&server).await - views_before,
        answered * per_answer,
        "each PHI answer has its event, and only those"
    );
    let stored: Vec<Value> = sqlx::query_scalar::<_, i64>(
        "SELECT device_seq FROM audit_events WHERE device_id = $1 ORDER BY device_seq",
    )
    .bind(device.id.to_string())
    .fetch_all(&server.owner_pool().await)
    .await
    .unwrap()
    .into_iter()
    .map(Value::from)
    .collect();
    assert_eq!(stored, vec![json!(1), json!(2), json!(3), json!(4)]);
    let key = PublicKey::from_hex(&device.audit_public_key).unwrap();
    verify_trail(&server.store, &key, &[]).await.unwrap();
}
