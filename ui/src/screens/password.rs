//! Passwords a user types: on a first sign-in, their own instead of the one someone else
//! chose (before the second factor); once signed in, a change of their own (the current
//! one, then the new one). A new password is always typed twice. The core locks after a
//! change (the server ended every session of the user), and the lock screen takes the new
//! password.

use leptos::prelude::*;
use serde::Serialize;

use crate::bridge::{change_phase, submit_command};
use crate::state::Ui;
use crate::widgets::{ErrorLine, focus_on_mount};

#[derive(Serialize)]
struct ChangeArgs {
    current_password: String,
    new_password: String,
}

/// A new password typed twice: `{id_prefix}-password` and `{id_prefix}-password-repeat`.
#[component]
fn NewPasswordFields(
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
fn typed_differently(ui: Ui, password: RwSignal<String>, repeat: RwSignal<String>) -> bool {
    let differ = password.get_untracked() != repeat.get_untracked();
    if differ {
        ui.error.set(Some(
            "The two new passwords differ. Type the same one twice.".into(),
        ));
    }
    differ
}

#[component]
pub(crate) fn ChangePasswordScreen() -> impl IntoView {
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

#[derive(Serialize)]
struct NewPasswordArgs {
    new_password: String,
}

/// A first sign-in with a password someone else chose (an admin, or the operator for a new
/// clinic's first admin): the user chooses their own before the second factor.
#[component]
pub(crate) fn ChooseNewPasswordScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
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
        let args = NewPasswordArgs {
            new_password: password.get_untracked(),
        };
        password.set(String::new());
        repeat.set(String::new());
        submit_command(ui, busy, "choose_new_password", args);
    };
    view! {
        <div class="card narrow" id="choose-password">
            <h1>"Choose your password"</h1>
            <p class="lead">
                "The password you signed in with was set for you and works only this once. "
                "Choose your own: at least 12 characters, not a common password, not your name. "
                "A passphrase of a few unrelated words works well."
            </p>
            <form on:submit=submit>
                <NewPasswordFields id_prefix="own" password repeat first/>
                <button id="own-password-submit" type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Saving…" } else { "Save and continue" }}
                </button>
            </form>
            <button class="link" id="cancel-sign-in" on:click=move |_| change_phase(ui, "cancel_sign_in")>"Cancel"</button>
            <ErrorLine/>
        </div>
    }
}
