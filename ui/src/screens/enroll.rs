//! The first screen on a new workstation (and again after a revocation): an admin's one-time
//! code registers this device's key with the server.

use leptos::prelude::*;
use serde::Serialize;

use crate::bridge::submit_command;
use crate::state::Ui;
use crate::widgets::{ErrorLine, focus_on_mount};

#[derive(Serialize)]
struct EnrollArgs {
    enrollment_code: String,
    device_name: String,
}

#[component]
pub(crate) fn EnrollScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let code = RwSignal::new(String::new());
    let name = RwSignal::new(String::from("Front desk workstation"));
    let first = NodeRef::new();
    focus_on_mount(first);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let args = EnrollArgs {
            enrollment_code: code.get_untracked(),
            device_name: name.get_untracked(),
        };
        submit_command(ui, busy, "enroll", args);
    };
    let server = move || ui.status.get().map(|s| s.server_url).unwrap_or_default();
    view! {
        <div class="card narrow">
            <h1>"Enroll this workstation"</h1>
            <p class="lead">"Enter the one-time code your ClinicDesk admin gave you. This registers a device key, kept in the system keychain, with "<b>{server}</b>"."</p>
            <form on:submit=submit>
                <label for="enroll-code">"Enrollment code"</label>
                <input id="enroll-code" node_ref=first autocomplete="off" placeholder="XXXX-XXXX-XXXX"
                    prop:value=move || code.get() on:input=move |ev| code.set(event_target_value(&ev))/>
                <label for="enroll-device-name">"Workstation name"</label>
                <input id="enroll-device-name" prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev))/>
                <button id="enroll-submit" type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Enrolling…" } else { "Enroll" }}
                </button>
            </form>
            <ErrorLine/>
        </div>
    }
}
