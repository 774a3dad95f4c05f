//! Signing in with username and password, the first of two steps (the second is in
//! `second_factor`). The same form restores a workstation's lost key (`device`).

use leptos::prelude::*;
use serde::Serialize;

use crate::bridge::submit_command;
use crate::state::Ui;
use crate::widgets::{ErrorLine, focus_on_mount};

#[derive(Serialize)]
struct SignInArgs {
    username: String,
    password: String,
}

#[component]
pub(crate) fn SignInScreen() -> impl IntoView {
    view! {
        <div class="card narrow">
            <h1>"Sign in"</h1>
            <p class="lead">"Use your own ClinicDesk account. Never share it, even on a shared workstation."</p>
            <CredentialsForm id_prefix="login" command="sign_in" label="Sign in"/>
            <ErrorLine/>
        </div>
    }
}

/// Username and password for `command` (`sign_in`, `recover_device_secret`); the fields are
/// `{id_prefix}-username`, `{id_prefix}-password` and `{id_prefix}-submit`.
#[component]
pub(super) fn CredentialsForm(
    id_prefix: &'static str,
    command: &'static str,
    label: &'static str,
) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let first = NodeRef::new();
    focus_on_mount(first);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let args = SignInArgs {
            username: username.get_untracked(),
            password: password.get_untracked(),
        };
        password.set(String::new());
        submit_command(ui, busy, command, args);
    };
    let (user_id, password_id) = (
        format!("{id_prefix}-username"),
        format!("{id_prefix}-password"),
    );
    view! {
        <form on:submit=submit>
            <label for=user_id.clone()>"Username"</label>
            <input id=user_id node_ref=first autocomplete="username" prop:value=move || username.get()
                on:input=move |ev| username.set(event_target_value(&ev))/>
            <label for=password_id.clone()>"Password"</label>
            <input id=password_id type="password" autocomplete="current-password"
                prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
            <button id=format!("{id_prefix}-submit") type="submit" disabled=move || busy.get()>
                {move || if busy.get() { "Signing in…" } else { label }}
            </button>
        </form>
    }
}
