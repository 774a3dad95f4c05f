//! The workstation's own trouble, shown instead of signing in: the keychain is unavailable,
//! it lost this device's secret (a sign-in gets it back from the server's escrow), or an
//! admin revoked the workstation and it wiped itself.

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

/// The server revoked this workstation and it wiped itself.
#[component]
pub(crate) fn RevokedScreen() -> impl IntoView {
    view! {
        <div class="card narrow" id="revoked-screen">
            <h1>"This workstation was revoked"</h1>
            <p class="lead">"An admin of your clinic revoked this workstation's access. Its keys and every offline copy of patient data on it were erased."</p>
            <p>"To use it again, ask your admin for a new enrollment code."</p>
        </div>
        <EnrollScreen/>
    }
}
