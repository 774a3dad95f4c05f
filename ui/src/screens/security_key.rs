//! A security key's ceremony as the user sees it: what the key waits for (plugging in, its
//! PIN, a touch), shown while the core runs the ceremony, and the PIN handed to the key.

use clinicdesk_protocol::app::KeyPrompt;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::{NoArgs, call};
use crate::state::Ui;

#[derive(Serialize)]
struct PinArgs {
    pin: String,
}

/// While a security key ceremony runs (`key_busy`), the status is read four times a second
/// rather than once, so a prompt to touch the key shows while the key still blinks.
pub(super) fn poll_while_key_busy(ui: Ui, key_busy: RwSignal<bool>) {
    if let Ok(handle) = set_interval_with_handle(
        move || {
            if key_busy.get_untracked() {
                ui.refresh();
            }
        },
        std::time::Duration::from_millis(250),
    ) {
        on_cleanup(move || handle.clear());
    }
}

/// What the security key waits for while the core runs a ceremony with it: plugging in,
/// its PIN (typed here and handed to the key, nowhere else), a touch.
#[component]
pub(super) fn KeyPromptPanel() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let prompt = move || ui.status.get().and_then(|s| s.security_key_prompt);
    let asks_pin = move || matches!(prompt(), Some(KeyPrompt::EnterPin | KeyPrompt::WrongPin));
    let pin = RwSignal::new(String::new());
    let input = NodeRef::<leptos::html::Input>::new();
    // The PIN field takes the keyboard as soon as the key asks.
    Effect::new(move |_| {
        if asks_pin()
            && let Some(field) = input.get()
        {
            let _ = field.focus();
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let args = PinArgs {
            pin: pin.get_untracked(),
        };
        pin.set(String::new());
        ui.error.set(None);
        spawn_local(async move {
            if let Err(e) = call::<_, ()>("security_key_pin", &args).await {
                ui.fail(&e);
            }
        });
    };
    let cancel = move |_| {
        pin.set(String::new());
        spawn_local(async move {
            let _ = call::<_, ()>("cancel_security_key", &NoArgs {}).await;
        });
    };
    view! {
        <Show when=move || prompt().is_some()>
            <div class="key-prompt" id="security-key-prompt" role="status">
                {move || match prompt() {
                    Some(KeyPrompt::InsertKey) => view! {
                        <p class="lead" id="key-prompt-insert">"Insert your security key into a USB port."</p>
                    }.into_any(),
                    Some(KeyPrompt::TouchKey) => view! {
                        <p class="lead" id="key-prompt-touch">"Touch your security key now: its light blinks."</p>
                    }.into_any(),
                    Some(KeyPrompt::WrongPin) => view! {
                        <p class="lead warning" id="key-prompt-wrong-pin">"That PIN is not right. Type it again: after a few wrong tries the key must be unplugged, and too many block it."</p>
                    }.into_any(),
                    _ => view! {
                        <p class="lead" id="key-prompt-pin">"Your security key asks for its PIN (the one you chose for the key, not your password)."</p>
                    }.into_any(),
                }}
                <Show when=asks_pin>
                    <form on:submit=submit>
                        <label for="security-key-pin">"Security key PIN"</label>
                        <input id="security-key-pin" type="password" node_ref=input autocomplete="off"
                            prop:value=move || pin.get() on:input=move |ev| pin.set(event_target_value(&ev))/>
                        <button id="security-key-pin-submit" type="submit">"Unlock the key"</button>
                    </form>
                </Show>
                <button id="security-key-cancel" type="button" class="link" on:click=cancel>"Cancel"</button>
            </div>
        </Show>
    }
}
