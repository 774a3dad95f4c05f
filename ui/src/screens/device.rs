//! The workstation's own trouble, shown instead of signing in: the keychain is unavailable,
//! it lost this device's secret (a sign-in gets it back from the server's escrow), or an
//! admin revoked the workstation and it wiped itself.

use clinicdesk_protocol::app::Revocation;
use leptos::prelude::*;

use super::enroll::EnrollScreen;
use super::sign_in::CredentialsForm;
use crate::bridge::change_phase;
use crate::state::Ui;
use crate::widgets::ErrorLine;

/// The keychain is locked or lost this device's secret: nothing opens, and nothing falls
/// back to an unencrypted store.
#[component]
pub(crate) fn KeychainScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <div class="card narrow" id="keychain-screen">
            <h1>"The system keychain is not available"</h1>
            <p class="lead">"ClinicDesk keeps this workstation's key only in the system keychain, and the keychain is locked or not running."</p>
            <ol>
                <li>"Unlock your desktop keyring (it usually unlocks when you log in to the computer), then press Retry."</li>
                <li>"If Retry keeps failing, ask your clinic's IT to check the desktop's keyring service. Your records are safe on the server."</li>
            </ol>
            <button id="keychain-retry" on:click=move |_| change_phase(ui, "retry_keychain")>"Retry"</button>
            <ErrorLine/>
        </div>
    }
}

/// The keychain lost this workstation's secret: a user's online sign-in with a second
/// factor gets the server's escrowed copy back, and everything on the workstation opens
/// again.
#[component]
pub(crate) fn RecoverKeyScreen() -> impl IntoView {
    view! {
        <div class="card narrow" id="recover-key-screen">
            <h1>"Restore this workstation's key"</h1>
            <p class="lead">"The system keychain no longer has this workstation's key (it was reset or replaced), so its offline data and unsent audit records cannot be opened."</p>
            <p>"Sign in with your ClinicDesk account while connected to the network. After your second factor, the server gives this workstation its key back; nothing is lost. Your admin sees that this happened."</p>
            <CredentialsForm id_prefix="recover" command="recover_device_secret" label="Sign in and restore"/>
            <ErrorLine/>
        </div>
    }
}

/// What a revoked workstation did with its unsent audit events before it wiped itself.
fn handed_in_text(r: Revocation) -> String {
    let events = |n: u64| if n == 1 { "event" } else { "events" };
    let mut text = format!(
        "Before erasing, it handed in {} audit {} to your clinic's trail.",
        r.handed_in,
        events(r.handed_in)
    );
    if r.left_behind > 0 {
        text.push_str(&format!(
            " {} audit {} could not be handed in (recorded after the revocation, or the server could not be reached).",
            r.left_behind,
            events(r.left_behind)
        ));
    }
    text
}

/// The server revoked this workstation; it handed in its unsent audit events and wiped
/// itself.
#[component]
pub(crate) fn RevokedScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let handed_in = move || {
        ui.status
            .get()
            .and_then(|s| s.revocation)
            .map(handed_in_text)
    };
    view! {
        <div class="card narrow" id="revoked-screen">
            <h1>"This workstation was revoked"</h1>
            <p class="lead">"An admin of your clinic revoked this workstation's access. Its keys and every offline copy of patient data on it were erased."</p>
            {move || handed_in().map(|text| view! { <p id="revoked-hand-in">{text}</p> })}
            <p>"To use it again, ask your admin for a new enrollment code."</p>
        </div>
        <EnrollScreen/>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revoked_screen_says_what_was_handed_in_and_what_was_not() {
        let all = Revocation {
            handed_in: 7,
            left_behind: 0,
        };
        assert_eq!(
            handed_in_text(all),
            "Before erasing, it handed in 7 audit events to your clinic's trail."
        );
        let some = Revocation {
            handed_in: 1,
            left_behind: 2,
        };
        let text = handed_in_text(some);
        assert!(text.starts_with("Before erasing, it handed in 1 audit event to"));
        assert!(
            text.contains(" 2 audit events could not be handed in"),
            "{text}"
        );
    }
}
