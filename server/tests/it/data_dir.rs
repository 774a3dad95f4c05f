//! The server's data directory is its account's alone: another account on the host must
//! not read the embedded database (patients' names, in the database file and its WAL) or
//! the keys. The directory is 0700 and every file under it 0600, whatever the umask, and a
//! directory an older version left readable is narrowed when the server opens it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clinicdesk_server::http::tls;
use clinicdesk_server::secrets::kek::KeyFileProvider;
use clinicdesk_server::store::{Store, StoreLocation};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every directory and file under `dir` (itself included), with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut out = vec![(dir.display().to_string(), mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(modes(&path));
        } else {
            out.push((path.display().to_string(), mode(&path)));
        }
    }
    out
}

/// The embedded store of `data` as the CLI opens it: its key wrapped by the key files in
/// their default place beside it.
fn default_location(data: &Path) -> StoreLocation {
    let keys = KeyFileProvider::new(KeyFileProvider::default_dir(data));
    clinicdesk_server::state::embedded_location(data, &keys).unwrap()
}

#[tokio::test]
async fn the_data_directory_and_every_file_in_it_are_the_servers_alone() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // The CLI creates the directory, the database and the keys (embedded store, whatever
    // database the test run was given).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clinicdesk-server"))
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_MIGRATION_URL")
        .args(["seed", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tls::ensure_local_ca(&data).unwrap();
    // An open store has its WAL and shared-memory files beside the database.
    let store = Store::open(&default_location(&data)).await.unwrap();
    store
        .create_clinic(uuid::Uuid::now_v7(), "Clinic", 900, "UTC", 0)
        .await
        .unwrap();
    let all = modes(&data);
    assert!(
        all.iter()
            .any(|(p, _)| p.ends_with("clinicdesk.sqlite3-wal")),
        "{all:?}"
    );
    for (path, m) in &all {
        let want = if Path::new(path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*m, want, "{path}: {m:o}");
    }
    drop(store);

    // Left readable by an older version: narrowed when the server opens it again.
    let db = data.join("clinicdesk.sqlite3");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&default_location(&data)).await.unwrap();
    assert_eq!((mode(&data), mode(&db)), (0o700, 0o600));
    drop(store);
}
