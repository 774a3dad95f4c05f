//! The second step of signing in: a code from the user's authenticator app, their security
//! key or a recovery code; on a first sign-in, setting up one of the first two, and the
//! recovery codes shown once after that.

use clinicdesk_protocol::app::SecondFactorSetUp;
use clinicdesk_protocol::mfa::{MfaMethod, TotpSetup};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use super::security_key::{KeyPromptPanel, poll_while_key_busy};
use crate::bridge::{NoArgs, call, change_phase, run_command, submit_command};
use crate::state::Ui;
use crate::widgets::{ErrorLine, focus_on_mount};

#[derive(Serialize)]
struct CodeArgs {
    method: &'static str,
    code: String,
}

#[derive(Serialize)]
struct ConfirmArgs {
    code: String,
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
pub(crate) fn SecondFactorScreen() -> impl IntoView {
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
pub(crate) fn SetUpSecondFactorScreen() -> impl IntoView {
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
pub(crate) fn RecoveryCodesScreen(codes: Vec<String>) -> impl IntoView {
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
