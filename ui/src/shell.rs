//! The app shell: the frame around every screen (top bar, status bar) and the one place that
//! picks what fills it, by the core's phase: a screen from `screens`, or while `Unlocked` a
//! workspace from `workspace`. It also keeps the page in step with the core: the status
//! poll, the lock event, activity reports for the idle lock, and Ctrl+L.

use std::time::Duration;

use clinicdesk_protocol::app::Phase;
use clinicdesk_protocol::policy::Permission;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::bridge::{NoArgs, call, change_phase, on_event};
use crate::screens::{
    ChangePasswordScreen, ChooseNewPasswordScreen, EnrollScreen, KeychainScreen, LockScreen,
    RecoverKeyScreen, RecoveryCodesScreen, RevokedScreen, SecondFactorScreen,
    SetUpSecondFactorScreen, SignInScreen,
};
use crate::state::Ui;
use crate::time::local_time;
use crate::workspace::{AdminWorkspace, ScheduleWorkspace};

/// The event the core emits when it locks by itself.
const LOCKED_EVENT: &str = "clinicdesk://locked";
/// Activity is reported at most this often.
const ACTIVITY_EVERY_MS: f64 = 1_000.0;

/// The whole page; it owns the `Ui` state every component reads from context.
#[component]
pub(crate) fn App() -> impl IntoView {
    let ui = Ui::new();
    provide_context(ui);
    ui.refresh();
    // The status bar and the idle countdown; a lock also arrives as an event at once.
    let _ = set_interval_with_handle(move || ui.refresh(), Duration::from_secs(1));
    on_event(LOCKED_EVENT, move |_| {
        ui.forget_phi();
        ui.refresh();
    });

    let last_activity = StoredValue::new(0.0_f64);
    let report_activity = move || {
        let now = js_sys::Date::now();
        if now - last_activity.get_value() >= ACTIVITY_EVERY_MS {
            last_activity.set_value(now);
            spawn_local(async move {
                let _ = call::<_, ()>("activity", &NoArgs {}).await;
            });
        }
    };
    let _ = window_event_listener(leptos::ev::keydown, move |ev| {
        report_activity();
        // Ctrl+L locks now.
        if ev.ctrl_key() && ev.key().eq_ignore_ascii_case("l") {
            ev.prevent_default();
            lock_now(ui);
        }
    });
    let _ = window_event_listener(leptos::ev::pointerdown, move |_| report_activity());
    let _ = window_event_listener(leptos::ev::pointermove, move |_| report_activity());

    // Screens follow the phase only: a status poll that changes nothing else must not
    // rebuild the screen (and wipe what the user is typing).
    let phase = Memo::new(move |_| ui.status.get().map(|s| s.phase));
    let showing_codes = Memo::new(move |_| ui.recovery_codes.with(Option::is_some));
    let changing_password = Memo::new(move |_| ui.changing_password.get());
    // Roles that read no schedule (admins) get the admin workspace instead.
    let is_admin =
        move || !ui.user_may(Permission::ReadSchedule) && ui.user_may(Permission::ManageDevices);
    view! {
        <div class="app">
            <TopBar/>
            <main>
                {move || match phase.get() {
                    Some(Phase::Unlocked) if showing_codes.get() => {
                        let codes = ui.recovery_codes.get_untracked().unwrap_or_default();
                        view! { <RecoveryCodesScreen codes/> }.into_any()
                    }
                    Some(Phase::Unlocked) if changing_password.get() => {
                        view! { <ChangePasswordScreen/> }.into_any()
                    }
                    None => view! { <p class="muted">"Starting…"</p> }.into_any(),
                    Some(Phase::NotEnrolled) => view! { <EnrollScreen/> }.into_any(),
                    Some(Phase::SignedOut) => view! { <SignInScreen/> }.into_any(),
                    Some(Phase::SecondFactor) => view! { <SecondFactorScreen/> }.into_any(),
                    Some(Phase::SetUpSecondFactor) => {
                        view! { <SetUpSecondFactorScreen/> }.into_any()
                    }
                    Some(Phase::ChooseNewPassword) => {
                        view! { <ChooseNewPasswordScreen/> }.into_any()
                    }
                    Some(Phase::Locked) => view! { <LockScreen/> }.into_any(),
                    Some(Phase::Unlocked) if is_admin() => view! { <AdminWorkspace/> }.into_any(),
                    Some(Phase::Unlocked) => view! { <ScheduleWorkspace/> }.into_any(),
                    Some(Phase::KeychainUnavailable) => view! { <KeychainScreen/> }.into_any(),
                    Some(Phase::DeviceSecretMissing) => view! { <RecoverKeyScreen/> }.into_any(),
                    Some(Phase::Revoked) => view! { <RevokedScreen/> }.into_any(),
                }}
            </main>
            <StatusBar/>
        </div>
    }
}

fn lock_now(ui: Ui) {
    change_phase(ui, "lock");
}

/// The clinic, who is signed in, and while unlocked the session's buttons.
#[component]
fn TopBar() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let clinic = move || {
        ui.status
            .get()
            .and_then(|s| s.clinic_name)
            .unwrap_or_default()
    };
    let unlocked = move || ui.status.get().is_some_and(|s| s.phase == Phase::Unlocked);
    let who = move || {
        ui.status
            .get()
            .and_then(|s| s.user)
            .map(|u| format!("{} · {}", u.display_name, u.role.as_str().replace('_', " ")))
            .unwrap_or_default()
    };
    view! {
        <header class="top">
            <span class="brand">"ClinicDesk"</span>
            <span class="clinic">{clinic}</span>
            <span class="spacer"></span>
            <span class="who">{who}</span>
            <Show when=unlocked>
                <button id="lock-now" class="secondary" title="Lock now (Ctrl+L): your offline copy stays, your password unlocks it"
                    on:click=move |_| lock_now(ui)>
                    "Lock now"
                </button>
                <button id="switch-user" class="secondary" title="Lock and let someone else sign in; your offline copy stays"
                    on:click=move |_| change_phase(ui, "switch_user")>
                    "Switch user"
                </button>
                <button id="change-password-open" class="secondary" title="Change your ClinicDesk password"
                    on:click=move |_| { ui.error.set(None); ui.changing_password.set(true) }>
                    "Password"
                </button>
                <button id="sign-out" class="secondary" title="Sign out and remove your offline copy from this workstation"
                    on:click=move |_| change_phase(ui, "sign_out")>
                    "Sign out"
                </button>
            </Show>
        </header>
    }
}

/// Whether the server is reachable, the audit events not yet uploaded, and the idle
/// countdown in its last minute.
#[component]
fn StatusBar() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let status = move || ui.status.get();
    view! {
        <footer class="status" id="status-bar">
            {move || status().map(|s| {
                let online = match s.online {
                    Some(true) => view! { <span class="online">"● Online"</span> }.into_any(),
                    Some(false) => view! { <span class="offline">"● Offline"</span> }.into_any(),
                    None => view! { <span>"○ Not connected yet"</span> }.into_any(),
                };
                let pending = s.outbox_pending.map(|n| format!("Audit events waiting: {n}"));
                let unsent = s.unsent_changes.filter(|n| *n > 0).map(|n| view! {
                    <button class="link unsent" id="unsent-changes-open" title="Changes the server does not have yet (Alt+U)"
                        on:click=move |_| ui.show_changes.set(true)>
                        {format!("Unsent changes: {n}")}
                    </button>
                });
                let offline_session = s.offline_session.then(|| view! {
                    <span class="offline" id="offline-session" title="The server cannot be reached: you work from this workstation's offline copy">"Working offline"</span>
                });
                let syncing = s.sync.map(|p| view! {
                    <span class="syncing" id="sync-progress" role="status">
                        {format!("Updating offline copy: {} of {}", p.done, p.total)}
                    </span>
                });
                // Admins hold no patients: no copy to speak of.
                let holds_copy = s.user.as_ref().is_some_and(|u| {
                    clinicdesk_protocol::policy::allows(u.role, Permission::ReadDemographics)
                });
                let copy = s.offline_copy.filter(|_| holds_copy).map(|c| {
                    let when = c.refreshed_at.map(|t| format!(" ({})", local_time(&t))).unwrap_or_default();
                    view! {
                        <span id="offline-copy" title="What your offline copy on this workstation holds, and when it was last refreshed">
                            {format!("Copy: {} patients, {} days{when}", c.patients, c.days)}
                        </span>
                    }
                });
                let uploaded = s.last_upload_at.map(|t| format!("Last upload: {}", local_time(&t)));
                let countdown = s.idle_seconds_left.filter(|left| *left < 60).map(|left| {
                    view! { <span class="countdown" id="idle-countdown">{format!("Locking in {left} s")}</span> }
                });
                view! { {online} {offline_session} {syncing} {unsent} {copy} <span>{pending}</span> <span>{uploaded}</span> {countdown} }
            })}
        </footer>
    }
}
