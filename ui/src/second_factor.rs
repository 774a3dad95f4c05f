//! The second step of signing in: a code from the user's authenticator app, their security
//! key or a recovery code; setting up one of the first two on a first sign-in, and the recovery codes shown
//! once after that; before them, choosing one's own password when someone else set it.

use clinicdesk_protocol::app::{KeyPrompt, SecondFactorSetUp};
use clinicdesk_protocol::mfa::{MfaMethod, TotpSetup};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::{NoArgs, call};
use crate::password::{NewPasswordFields, typed_differently};
use crate::views::{ErrorLine, Ui, change_phase, focus_on_mount, run_command, submit_command};

#[derive(Serialize)]
struct CodeArgs {
    method: &'static str,
    code: String,
}

#[derive(Serialize)]
struct ConfirmArgs {
    code: String,
}

#[derive(Serialize)]
struct PinArgs {
    pin: String,
}

/// While a security key ceremony runs (`key_busy`), the status is read four times a second
/// rather than once, so a prompt to touch the key shows while the key still blinks.
fn poll_while_key_busy(ui: Ui, key_busy: RwSignal<bool>) {
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
fn KeyPromptPanel() -> impl IntoView {
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

/// The secret in groups of four, as authenticator apps show it.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The otpauth URI as a QR code (SVG markup from the `qrcode` crate, our own data only).
fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(176, 176)
            .quiet_zone(true)
            .build(),
    )
}

#[component]
pub fn SecondFactorScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let methods = move || ui.status.get().map(|s| s.mfa_methods).unwrap_or_default();
    let has_totp = move || methods().contains(&MfaMethod::Totp);
    let can_recover = move || methods().contains(&MfaMethod::RecoveryCode);
    let key_here = move || ui.status.get().is_some_and(|s| s.security_key);
    let use_key = move || methods().contains(&MfaMethod::Webauthn) && key_here();
    // Recovery codes are the way in when there is no authenticator to type from.
    let use_recovery = RwSignal::new(false);
    let recovery = move || use_recovery.get() || !has_totp();
    let code = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    // The key's ceremony runs apart from a typed code: one at a time, each labelled.
    let key_busy = RwSignal::new(false);
    poll_while_key_busy(ui, key_busy);
    let either_busy = move || busy.get() || key_busy.get();
    let first = NodeRef::new();
    focus_on_mount(first);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let args = CodeArgs {
            method: if recovery() { "recovery_code" } else { "totp" },
            code: code.get_untracked(),
        };
        code.set(String::new());
        submit_command(ui, busy, "submit_second_factor", args);
    };
    view! {
        <div class="card narrow" id="second-factor">
            <h1>"Verify it's you"</h1>
            <Show when=use_key>
                <div class="security-key">
                    <p class="lead">"Insert your security key; enter its PIN if it asks, then touch it when it blinks."</p>
                    <button id="mfa-security-key" type="button" disabled=either_busy
                        on:click=move |_| submit_command(ui, key_busy, "verify_with_security_key", NoArgs {})>
                        {move || if key_busy.get() { "Waiting for your key…" } else { "Use my security key" }}
                    </button>
                    <KeyPromptPanel/>
                </div>
                <p class="muted">{move || if recovery() {
                    "Or enter one of the recovery codes you saved when you set up your second factor (each works once):"
                } else {
                    "Or enter the 6-digit code your authenticator app shows:"
                }}</p>
            </Show>
            <Show when=move || !use_key()>
                <Show when=move || !recovery()
                    fallback=move || view! {
                        <p class="lead">"Enter one of the recovery codes you saved when you set up your second factor. Each code works once."</p>
                        <Show when=move || !has_totp() && !key_here()>
                            <p class="muted">"Your account uses a security key, and this workstation has none connected to ClinicDesk. Use a recovery code, or ask your admin to reset your second factor."</p>
                        </Show>
                    }>
                    <p class="lead">"Enter the 6-digit code your authenticator app shows for ClinicDesk."</p>
                </Show>
            </Show>
            <form on:submit=submit>
                <label for="mfa-code">{move || if recovery() { "Recovery code" } else { "Code" }}</label>
                <input id="mfa-code" node_ref=first autocomplete="one-time-code"
                    inputmode=move || if recovery() { "text" } else { "numeric" }
                    placeholder=move || if recovery() { "XXXX-XXXX-XXXX" } else { "123456" }
                    prop:value=move || code.get() on:input=move |ev| code.set(event_target_value(&ev))/>
                <button id="mfa-submit" type="submit" disabled=either_busy>
                    {move || if busy.get() { "Checking…" } else { "Continue" }}
                </button>
            </form>
            <p class="muted">
                <Show when=move || can_recover() && has_totp()>
                    <button id="mfa-use-recovery" class="link" on:click=move |_| {
                        use_recovery.update(|r| *r = !*r);
                        ui.error.set(None);
                    }>
                        {move || if use_recovery.get() { "Use my authenticator app" } else { "Use a recovery code instead" }}
                    </button>
                    " · "
                </Show>
                <StartOver/>
            </p>
            <ErrorLine/>
        </div>
    }
}

#[component]
pub fn SetUpSecondFactorScreen() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let setup = RwSignal::new(None::<TotpSetup>);
    spawn_local(async move {
        match call::<_, TotpSetup>("start_totp_setup", &NoArgs {}).await {
            Ok(s) => setup.set(Some(s)),
            Err(e) => ui.fail(&e),
        }
    });
    let code = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let key_busy = RwSignal::new(false);
    poll_while_key_busy(ui, key_busy);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let args = ConfirmArgs {
            code: code.get_untracked(),
        };
        code.set(String::new());
        finish_setup(ui, busy, "confirm_totp_setup", args);
    };
    view! {
        <div class="card" id="totp-setup">
            <h1>"Set up your authenticator"</h1>
            <p class="lead">"ClinicDesk asks for a second proof at sign-in: a code from an authenticator app on your phone (Google Authenticator, Microsoft Authenticator, FreeOTP, 1Password…)."</p>
            {move || match setup.get() {
                None => view! { <p class="muted">"Preparing your key…"</p> }.into_any(),
                Some(s) => {
                    let qr = qr_svg(s.otpauth_uri.expose()).unwrap_or_default();
                    view! {
                        <div class="totp-setup">
                            <div class="qr" inner_html=qr></div>
                            <ol>
                                <li>"In the app, add an account and scan this code, or type the key:"
                                    <p><code id="totp-secret" class="secret">{grouped(s.secret_base32.expose())}</code></p>
                                </li>
                                <li>"Enter the 6-digit code the app now shows."</li>
                            </ol>
                        </div>
                    }.into_any()
                }
            }}
            <form on:submit=submit>
                <label for="totp-setup-code">"Code from the app"</label>
                <input id="totp-setup-code" autocomplete="one-time-code" inputmode="numeric" placeholder="123456"
                    prop:value=move || code.get() on:input=move |ev| code.set(event_target_value(&ev))/>
                <button id="totp-setup-submit" type="submit" disabled=move || busy.get() || key_busy.get() || setup.get().is_none()>
                    {move || if busy.get() { "Checking…" } else { "Turn on and continue" }}
                </button>
            </form>
            <Show when=move || ui.status.get().is_some_and(|s| s.security_key)>
                <div class="security-key">
                    <p>"Or use a security key instead: insert it, enter its PIN if it asks, then touch it when it blinks."</p>
                    <button id="setup-security-key" type="button" class="outline" disabled=move || busy.get() || key_busy.get()
                        on:click=move |_| finish_setup(ui, key_busy, "set_up_security_key", NoArgs {})>
                        {move || if key_busy.get() { "Waiting for your key…" } else { "Use a security key" }}
                    </button>
                    <KeyPromptPanel/>
                </div>
            </Show>
            <p class="muted"><StartOver/></p>
            <ErrorLine/>
        </div>
    }
}

/// Finishes setting up a first second factor (a TOTP code confirmed, or a security key
/// registered): the session opens and the recovery codes are shown once.
fn finish_setup<A: Serialize + 'static>(
    ui: Ui,
    busy: RwSignal<bool>,
    command: &'static str,
    args: A,
) {
    run_command(ui, busy, command, args, move |done: SecondFactorSetUp| {
        ui.recovery_codes.set(Some(
            done.recovery_codes
                .iter()
                .map(|c| c.expose().to_owned())
                .collect(),
        ));
        ui.apply_status(done.status);
    });
}

/// Gives up this sign-in and goes back to username and password.
#[component]
fn StartOver() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <button id="mfa-cancel" class="link" on:click=move |_| change_phase(ui, "cancel_sign_in")>
            "Start over"
        </button>
    }
}

/// Shown once, right after the first factor is set up; the page forgets the codes when
/// the user confirms.
#[component]
pub fn RecoveryCodesScreen(codes: Vec<String>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <div class="card narrow" id="recovery-codes">
            <h1>"Save your recovery codes"</h1>
            <p class="lead">"If you lose your phone, each of these codes lets you sign in once. Store them somewhere safe, away from this workstation. They will not be shown again."</p>
            <ul class="codes">
                {codes.into_iter().map(|c| view! { <li><code>{c}</code></li> }).collect_view()}
            </ul>
            <button id="recovery-codes-done" on:click=move |_| ui.recovery_codes.set(None)>
                "I have saved them"
            </button>
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
pub fn ChooseNewPasswordScreen() -> impl IntoView {
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
