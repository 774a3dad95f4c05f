//! The lock screen: the session is kept, PHI is not; the user's password alone opens it
//! again (their second factor's grant still holds), or someone else signs in instead.

use leptos::prelude::*;
use serde::Serialize;

use crate::bridge::{change_phase, submit_command};
use crate::state::Ui;
use crate::widgets::{ErrorLine, focus_on_mount};

#[derive(Serialize)]
struct UnlockArgs {
    password: String,
}

#[component]
pub(crate) fn LockScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let password = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let first = NodeRef::new();
    focus_on_mount(first);
    let who = move || {
        ui.status
            .get()
            .and_then(|s| s.user)
            .map(|u| u.display_name)
            .unwrap_or_default()
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let args = UnlockArgs {
            password: password.get_untracked(),
        };
        password.set(String::new());
        submit_command(ui, busy, "unlock", args);
    };
    view! {
        <div class="card narrow lock" id="lock-screen">
            <svg class="padlock" aria-hidden="true" viewBox="0 0 24 24" width="44" height="44">
                <path d="M7 10V7a5 5 0 0 1 10 0v3" fill="none" stroke="currentColor" stroke-width="2"/>
                <rect x="4" y="10" width="16" height="11" rx="2" fill="currentColor"/>
            </svg>
            <h1>"Locked"</h1>
            <p class="lead">{who}" locked this workstation. Enter the password to continue."</p>
            <form on:submit=submit>
                <label for="unlock-password">"Password"</label>
                <input id="unlock-password" node_ref=first type="password" autocomplete="current-password"
                    prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                <button id="unlock-submit" type="submit" disabled=move || busy.get()>"Unlock"</button>
            </form>
            <p class="muted">"Not you? "
                <button id="lock-switch-user" class="link" on:click=move |_| change_phase(ui, "switch_user")>
                    "Switch user"
                </button>
            </p>
            <ErrorLine/>
        </div>
    }
}
