//! The embedded store is encrypted at rest (SQLCipher) under a database key that is kept
//! only wrapped by the key-encryption keys: a copy of the data directory opens nothing
//! without the key directory, and a plaintext store an older version left is encrypted in
//! place on first open, its data intact. The real binary, on real files; SQLite only (on
//! PostgreSQL, encryption at rest is the database's own).

use std::path::Path;
use std::process::Output;

use clinicdesk_server::secrets::kek::KeyFileProvider;
use clinicdesk_server::secrets::store_key;
use clinicdesk_server::state::embedded_location;
use clinicdesk_server::store::{EMBEDDED_FILE, at_rest};

use crate::harness::{export_plaintext, own_pool};

fn server(data: &Path, keys: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_clinicdesk-server"))
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_MIGRATION_URL")
        .env("RUST_LOG", "info")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--key-dir")
        .arg(keys)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The bytes on disk: the database file and its WAL.
fn raw(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(b) = std::fs::read(data.join(format!("{EMBEDDED_FILE}{suffix}"))) {
            all.extend(b);
        }
    }
    all
}

/// Values of the seeded clinic that must not be readable on disk: every MRN and every
/// family name of six letters or more (shorter ones could turn up by chance in random
/// bytes), read with the key.
async fn canaries(data: &Path, keys: &Path) -> Vec<String> {
    let location = embedded_location(data, &KeyFileProvider::new(keys)).unwrap();
    let pool = own_pool(&location).await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT mrn, json_extract(record, '$.name.family') FROM patients ORDER BY mrn",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert!(rows.len() >= 5, "the seed has patients");
    rows.into_iter()
        .flat_map(|(mrn, family)| [mrn, family])
        .filter(|v| v.len() >= 6)
        .collect()
}

fn assert_sealed(data: &Path, values: &[String]) {
    let bytes = raw(data);
    assert!(bytes.len() > 50_000, "{} bytes on disk", bytes.len());
    assert!(
        !bytes.starts_with(b"SQLite format 3\0"),
        "the file is not a plaintext database"
    );
    let found = values
        .iter()
        .filter(|v| bytes.windows(v.len()).any(|w| w == v.as_bytes()))
        .count();
    assert_eq!(
        found,
        0,
        "{found} of {} values readable on disk",
        values.len()
    );
}

#[tokio::test]
async fn the_embedded_store_is_encrypted_whole_and_opens_only_with_its_keys() {
    let root = tempfile::tempdir().unwrap();
    let (data, keys) = (root.path().join("data"), root.path().join("keys"));
    ok(server(&data, &keys, &["seed"]));
    let values = canaries(&data, &keys).await;
    assert_sealed(&data, &values);
    let wrapped = std::fs::read_to_string(data.join(store_key::FILE)).unwrap();
    assert!(wrapped.contains("\"kek_version\":1"), "stored wrapped only");

    // Without its keys: plain SQLite reads no page of it.
    let plain = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(data.join(EMBEDDED_FILE)),
    )
    .await
    .unwrap();
    let err = sqlx::query("SELECT count(*) FROM patients")
        .fetch_one(&plain)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a database"), "{err}");
    plain.close().await;

    // With another key directory, the server refuses to start and says why; no new key
    // is made over the old one.
    let other = root.path().join("other-keys");
    let out = server(&data, &other, &["audit", "verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database key"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(data.join(store_key::FILE)).unwrap(),
        wrapped
    );
    // Without the wrapped key file, it says so: the key is never made anew for a
    // database that has pages.
    let saved = root.path().join("saved-key.json");
    std::fs::rename(data.join(store_key::FILE), &saved).unwrap();
    let out = server(&data, &keys, &["audit", "verify"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("key file") && stderr.contains("missing"),
        "{stderr}"
    );
    std::fs::rename(&saved, data.join(store_key::FILE)).unwrap();
    ok(server(&data, &keys, &["audit", "verify"]));
}

#[tokio::test]
async fn a_plaintext_store_of_an_older_version_is_encrypted_on_first_open_with_nothing_lost() {
    let root = tempfile::tempdir().unwrap();
    let (data, keys) = (root.path().join("data"), root.path().join("keys"));
    ok(server(&data, &keys, &["seed"]));
    let values = canaries(&data, &keys).await;
    let before = String::from_utf8_lossy(&ok(server(&data, &keys, &["audit", "verify"])).stdout)
        .into_owned();

    // The data directory as an older version left it: the same data in a plaintext file
    // (SQLCipher's export with an empty key), and no database key.
    let old = root.path().join("old");
    std::fs::create_dir(&old).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_file() && !name.starts_with(EMBEDDED_FILE) && name != store_key::FILE {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    let location = embedded_location(&data, &KeyFileProvider::new(&keys)).unwrap();
    let pool = own_pool(&location).await;
    export_plaintext(&pool, &old.join(EMBEDDED_FILE)).await;
    pool.close().await;
    assert!(at_rest::is_plaintext(&old.join(EMBEDDED_FILE)).unwrap());
    let old_bytes = std::fs::read(old.join(EMBEDDED_FILE)).unwrap();
    assert!(
        values
            .iter()
            .all(|v| old_bytes.windows(v.len()).any(|w| w == v.as_bytes())),
        "the older version's file holds the values in plaintext"
    );

    // The new version's first open encrypts it, says so, and verifies the same trail.
    let out = ok(server(&old, &keys, &["audit", "verify"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("now encrypted"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), before);
    assert!(old.join(store_key::FILE).exists());
    assert!(!old.join(format!("{EMBEDDED_FILE}.encrypting")).exists());
    assert_sealed(&old, &values);
    assert_eq!(canaries(&old, &keys).await, values, "nothing lost");
    // Once: the next open finds it encrypted and leaves it.
    let out = ok(server(&old, &keys, &["audit", "verify"]));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("now encrypted"));
}
