//! Invariant 4 across the whole data directory of a real workstation: after enrollment,
//! two users' online sign-ins, reads, a lock and a password change, no file under it holds
//! the device secret, a key derived from it, or a user's cache key (raw or as hex), and no
//! key file holds a plain seed.

use std::path::{Path, PathBuf};

use clinicdesk_app::secrets::keys::{DEVICE_SECRET, DeviceSecret};
use clinicdesk_protocol::audit::to_hex;
use clinicdesk_tests::{ServerProcess, enrolled_core};

const NEW: &str = "harbor-quilted-lantern-84";

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_key_is_on_disk_in_the_clear() {
    let server = ServerProcess::start();
    let app_dir = tempfile::tempdir().unwrap();
    let core = enrolled_core(&server, app_dir.path(), "Front desk 9").await;
    let mut users = Vec::new();
    for username in ["frontdesk", "clinician"] {
        let password = server.seed.password(username).to_owned();
        server.sign_in(&core, username, &password).await.unwrap();
        core.appointments().await.unwrap();
        core.lock();
        users.push((server.user_id(username), password));
        core.switch_user();
    }
    let password = users[0].1.clone();
    server.sign_in(&core, "frontdesk", &password).await.unwrap();
    core.change_password(&password, NEW).await.unwrap();
    users[0].1 = NEW.to_owned();

    let secret_bytes = core.keychain().load_key(DEVICE_SECRET).unwrap();
    let secret = DeviceSecret::from_bytes(secret_bytes.clone());
    let mut keys: Vec<(String, Vec<u8>)> = vec![
        ("device secret".into(), secret_bytes.to_vec()),
        ("outbox key".into(), secret.outbox_key().unwrap().to_vec()),
        (
            "device key wrap".into(),
            secret.device_key_wrap_key().unwrap().to_vec(),
        ),
        (
            "recovery key wrap".into(),
            secret.recovery_key_wrap_key().unwrap().to_vec(),
        ),
    ];
    for (n, (user_id, password)) in users.iter().enumerate() {
        let key = core
            .users()
            .unwrap_key(&secret, *user_id, password)
            .unwrap();
        keys.push((format!("cache key of user {n}"), key.to_vec()));
    }

    let mut files = Vec::new();
    all_files(app_dir.path(), &mut files);
    let key_files: Vec<_> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    // install, enrollment, revoked marker aside: the device key, the recovery key and each
    // user's cache key and recovery copy.
    assert!(key_files.len() >= 6, "{key_files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (name, key) in &keys {
            let hex = to_hex(key);
            assert!(
                !contains(&bytes, key) && !contains(&bytes, hex.as_bytes()),
                "{name} in {}",
                file.display()
            );
        }
    }
    for file in key_files {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        assert!(
            json.get("seed").is_none(),
            "a plain seed in {}",
            file.display()
        );
    }
}
