//! The keychain against a real Secret Service: gnome-keyring-daemon in the D-Bus session
//! that `cargo xtask test` starts. `secret-tool` (libsecret) looks at the same store from
//! outside, which a mock store could not satisfy.

use std::process::Command;

use clinicdesk_app::secrets::keychain::{Keychain, KeychainError, random_key};
use clinicdesk_protocol::audit::to_hex;

fn secret_tool_lookup(service: &str, account: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", service, "username", account])
        .output()
        .expect("secret-tool (libsecret-tools) is installed by cargo xtask test");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn keys_live_in_the_real_secret_service() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the tests with `cargo xtask test`"
    );
    let service = format!("ClinicDesk-test-{}", uuid::Uuid::new_v4());
    let keychain = Keychain::new(&service, "install-a");
    let key = random_key().unwrap();
    keychain.store_key("cache-key", &key).unwrap();

    // A fresh handle reads the same bytes back.
    let again = Keychain::new(&service, "install-a")
        .load_key("cache-key")
        .unwrap();
    assert_eq!(*again, *key);

    // Seen from outside through libsecret: the entry is in the Secret Service.
    assert_eq!(
        secret_tool_lookup(&service, "install-a/cache-key"),
        Some(to_hex(key.as_slice()))
    );

    // Another installation's entries are separate.
    assert!(matches!(
        Keychain::new(&service, "install-b").load_key("cache-key"),
        Err(KeychainError::Missing)
    ));

    keychain.delete("cache-key").unwrap();
    assert!(matches!(
        keychain.load_key("cache-key"),
        Err(KeychainError::Missing)
    ));
    assert_eq!(secret_tool_lookup(&service, "install-a/cache-key"), None);
}
