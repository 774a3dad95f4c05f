//! Which log lines the app writes: `RUST_LOG` (default `info`), except that the security-key
//! libraries never go below `warn`. At debug and trace level they print every CTAP2 message
//! and the key's decrypted PIN token, which no log may hold.

use tracing_subscriber::EnvFilter;

/// Libraries that see security-key secrets.
const QUIET: [&str; 2] = ["webauthn_authenticator_rs=warn", "fido_hid_rs=warn"];

/// The filter for `spec` (a `RUST_LOG` value; `None`, or one that does not parse, is `info`).
pub fn log_filter(spec: Option<&str>) -> EnvFilter {
    let mut filter = spec
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for directive in QUIET {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::log_filter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_key_libraries_log_no_secrets_even_when_everything_else_traces() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(Some("trace")))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "webauthn_authenticator_rs::ctap2::ctap20", "CANARY-pin-token");
            tracing::debug!(target: "fido_hid_rs::linux", "CANARY-frame");
            tracing::warn!(target: "webauthn_authenticator_rs::usb", "key warning");
            tracing::trace!(target: "clinicdesk_app::sync", "app trace");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("CANARY"), "{text}");
        assert!(text.contains("key warning"), "{text}");
        assert!(text.contains("app trace"), "{text}");
    }
}
