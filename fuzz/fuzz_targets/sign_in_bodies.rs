//! The sign-in and second-factor bodies as the server decodes them, before any session: any
//! bytes either fail to parse or give a body whose `Debug` (what a log line or a panic
//! message would print) is the same whatever password or code it carries: it shows none.

#![no_main]

use clinicdesk_protocol::Secret;
use clinicdesk_protocol::mfa::{FirstPassword, MfaCode};
use clinicdesk_protocol::wire::{LoginRequest, PasswordChange};
use libfuzzer_sys::fuzz_target;

/// A value no parsed secret is compared against by chance.
fn other() -> Secret {
    Secret::new("\u{1}other secret\u{1}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(login) = serde_json::from_slice::<LoginRequest>(body) {
                let mut swapped = login.clone();
                swapped.password = other();
                assert_eq!(format!("{login:?}"), format!("{swapped:?}"));
            }
        }
        1 => {
            if let Ok(code) = serde_json::from_slice::<MfaCode>(body) {
                let mut swapped = code.clone();
                (swapped.ticket, swapped.code) = (other(), other());
                assert_eq!(format!("{code:?}"), format!("{swapped:?}"));
            }
        }
        2 => {
            if let Ok(first) = serde_json::from_slice::<FirstPassword>(body) {
                let mut swapped = first.clone();
                (swapped.ticket, swapped.new_password) = (other(), other());
                assert_eq!(format!("{first:?}"), format!("{swapped:?}"));
            }
        }
        _ => {
            if let Ok(change) = serde_json::from_slice::<PasswordChange>(body) {
                let mut swapped = change.clone();
                (swapped.current_password, swapped.new_password) = (other(), other());
                assert_eq!(format!("{change:?}"), format!("{swapped:?}"));
            }
        }
    }
});
