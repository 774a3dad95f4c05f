//! Passwords a user types: a new one twice (shared by the first-password screen), and a
//! signed-in user's change of their own: the current one, the new one twice. The core locks
//! after a change (the server ended every session of the user), and the lock screen takes
//! the new password.

use leptos::prelude::*;
use serde::Serialize;

use crate::bridge::submit_command;
use crate::state::Ui;
use crate::widgets::{ErrorLine, focus_on_mount};

#[derive(Serialize)]
struct ChangeArgs {
    current_password: String,
    new_password: String,
}

/// A new password typed twice: `{id_prefix}-password` and `{id_prefix}-password-repeat`.
#[component]
pub fn NewPasswordFields(
    id_prefix: &'static str,
    password: RwSignal<String>,
    repeat: RwSignal<String>,
    #[prop(optional)] first: NodeRef<leptos::html::Input>,
) -> impl IntoView {
    let (id, repeat_id) = (
        format!("{id_prefix}-password"),
        format!("{id_prefix}-password-repeat"),
    );
    view! {
        <label for=id.clone()>"New password"</label>
        <input id=id type="password" autocomplete="new-password" node_ref=first
            prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
        <label for=repeat_id.clone()>"New password again"</label>
        <input id=repeat_id type="password" autocomplete="new-password"
            prop:value=move || repeat.get() on:input=move |ev| repeat.set(event_target_value(&ev))/>
    }
}

/// Whether the two typings differ; if so the user is told, and nothing is sent.
pub fn typed_differently(ui: Ui, password: RwSignal<String>, repeat: RwSignal<String>) -> bool {
    let differ = password.get_untracked() != repeat.get_untracked();
    if differ {
        ui.error.set(Some(
            "The two new passwords differ. Type the same one twice.".into(),
        ));
    }
    differ
}

#[component]
pub fn ChangePasswordScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let current = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let first = NodeRef::new();
    focus_on_mount(first);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if typed_differently(ui, password, repeat) {
            return;
        }
        let args = ChangeArgs {
            current_password: current.get_untracked(),
            new_password: password.get_untracked(),
        };
        for field in [current, password, repeat] {
            field.set(String::new());
        }
        submit_command(ui, busy, "change_password", args);
    };
    view! {
        <div class="card narrow" id="change-password">
            <h1>"Change your password"</h1>
            <p class="lead">
                "At least 12 characters, not a common password, not your name. Afterwards "
                "ClinicDesk locks and you sign in again with the new password and your second "
                "factor, here and on every other workstation."
            </p>
            <form on:submit=submit>
                <label for="current-password">"Current password"</label>
                <input id="current-password" type="password" autocomplete="current-password" node_ref=first
                    prop:value=move || current.get() on:input=move |ev| current.set(event_target_value(&ev))/>
                <NewPasswordFields id_prefix="new" password repeat/>
                <button id="change-password-submit" type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Saving…" } else { "Change password" }}
                </button>
            </form>
            <button class="link" id="change-password-cancel" on:click=move |_| {
                ui.error.set(None);
                ui.changing_password.set(false);
            }>"Cancel"</button>
            <ErrorLine/>
        </div>
    }
}
