//! The screens: enroll, sign in (with its second step in `second_factor`), schedule,
//! patient, lock, keychain trouble, revoked. Which one shows follows the core's phase; PHI
//! views exist only while the phase is `unlocked`.

use std::time::Duration;

use clinicdesk_protocol::app::{PatientSearchResults, Phase};
use clinicdesk_protocol::policy::Permission;
use clinicdesk_protocol::wire::{
    AppointmentList, BREAK_GLASS_MINUTES, BREAK_GLASS_TEXT_MAX, BreakGlassReason, ClinicalAccess,
    Patient,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::admin::AdminWorkspace;
use crate::bridge::{NoArgs, call, change_phase, on_event};
use crate::care_team::CareTeamPanel;
use crate::screens::{
    ChangePasswordScreen, ChooseNewPasswordScreen, EnrollScreen, KeychainScreen, LockScreen,
    RecoverKeyScreen, RecoveryCodesScreen, RevokedScreen, SecondFactorScreen,
    SetUpSecondFactorScreen, SignInScreen,
};
use crate::state::Ui;
use crate::time::{local_time, local_time_ms};
use crate::widgets::ErrorLine;

/// The event the core emits when it locks by itself.
const LOCKED_EVENT: &str = "clinicdesk://locked";
/// Activity is reported at most this often.
const ACTIVITY_EVERY_MS: f64 = 1_000.0;

#[component]
pub fn App() -> impl IntoView {
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
    // Roles that read no schedule (admins) get the workstation list instead.
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
                    Some(Phase::Unlocked) => view! { <Workspace/> }.into_any(),
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

#[component]
fn Workspace() -> impl IntoView {
    let ui = expect_context::<Ui>();
    ui.error.set(None);
    spawn_local(async move {
        match call::<_, AppointmentList>("appointments", &NoArgs {}).await {
            Ok(list) => ui.schedule.set(Some(list)),
            Err(e) => ui.fail(&e),
        }
    });
    view! {
        {move || match ui.patient.get() {
            Some(patient) => view! { <PatientView patient/> }.into_any(),
            None => view! { <ScheduleView/> }.into_any(),
        }}
    }
}

#[derive(Serialize)]
struct SearchArgs {
    query: String,
}

/// Find a patient among those on this workstation for this user (their encrypted cache):
/// by the start of a name, a date of birth or an MRN. Works offline.
#[component]
fn PatientFinder(open: impl Fn(uuid::Uuid) + Copy + Send + Sync + 'static) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let query = RwSignal::new(String::new());
    let found = RwSignal::new(None::<PatientSearchResults>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        ui.error.set(None);
        let args = SearchArgs {
            query: query.get_untracked(),
        };
        spawn_local(async move {
            match call::<_, PatientSearchResults>("search_patients", &args).await {
                Ok(results) => found.set(Some(results)),
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <div class="card" id="patient-finder">
            <form class="inline" on:submit=submit>
                <label for="patient-query">"Find a patient on this workstation"</label>
                <input id="patient-query" type="search" placeholder="Name, date of birth (MM/DD/YYYY) or MRN"
                    prop:value=move || query.get() on:input=move |ev| query.set(event_target_value(&ev))/>
                <button id="patient-search" type="submit">"Search"</button>
            </form>
            {move || found.get().map(|results| if results.patients.is_empty() {
                view! { <p class="muted" id="patient-no-match">"No patient on this workstation matches. Patients appear here once you have opened their chart."</p> }.into_any()
            } else {
                view! {
                    <table class="schedule" id="patient-results">
                        <thead><tr><th>"Patient"</th><th>"Date of birth"</th><th>"MRN"</th></tr></thead>
                        <tbody>
                            {results.patients.into_iter().map(|p| {
                                let pid = p.id;
                                view! {
                                    <tr>
                                        <td><button class="link found-patient" data-patient-id=pid.to_string()
                                            on:click=move |_| open(pid)>{p.name.expose().clone()}</button></td>
                                        <td>{p.birth_date.expose().clone()}</td>
                                        <td>{p.mrn.expose().clone()}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            })}
        </div>
    }
}

#[derive(Serialize)]
struct OpenPatientArgs {
    patient_id: String,
}

#[component]
fn ScheduleView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let open = move |patient_id: uuid::Uuid| {
        ui.error.set(None);
        spawn_local(async move {
            let args = OpenPatientArgs {
                patient_id: patient_id.to_string(),
            };
            match call::<_, Patient>("open_patient", &args).await {
                Ok(p) => ui.patient.set(Some(p)),
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <div class="stack">
        <PatientFinder open/>
        <div class="card" id="schedule">
            <h1>"Today's appointments"</h1>
            {move || match ui.schedule.get() {
                None => view! { <p class="muted">"Loading the schedule…"</p> }.into_any(),
                Some(list) if list.appointments.is_empty() => {
                    view! { <p class="muted">"No appointments today."</p> }.into_any()
                }
                Some(list) => view! {
                    <table class="schedule" id="schedule-list">
                        <thead><tr><th>"Time"</th><th>"Patient"</th><th>"Reason"</th></tr></thead>
                        <tbody>
                            {list.appointments.into_iter().map(|a| {
                                let pid = a.patient_id;
                                view! {
                                    <tr class="appointment-row" on:click=move |_| open(pid)>
                                        <td class="time">{local_time(&a.starts_at)}</td>
                                        <td>
                                            // A real button: reachable with Tab and Enter.
                                            <button class="link open-patient" data-patient-id=pid.to_string()
                                                on:click=move |ev| { ev.stop_propagation(); open(pid) }>
                                                {a.patient_name.expose().clone()}
                                            </button>
                                        </td>
                                        <td>{a.reason.expose().clone()}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            <ErrorLine/>
        </div>
        </div>
    }
}

#[component]
fn PatientView(patient: Patient) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let list = |items: &[String]| {
        if items.is_empty() {
            view! { <span class="muted">"None recorded"</span> }.into_any()
        } else {
            let items = items.to_vec();
            view! { <ul class="plain">{items.into_iter().map(|i| view! { <li>{i}</li> }).collect_view()}</ul> }
                .into_any()
        }
    };
    let clinical = patient.clinical.as_ref().map(|c| {
        view! {
            <h2>"Clinical summary"</h2>
            <dl class="facts">
                <dt>"Allergies"</dt><dd id="patient-allergies">{list(c.allergies.expose())}</dd>
                <dt>"Problems"</dt><dd>{list(c.problems.expose())}</dd>
                <dt>"Medications"</dt><dd>{list(c.medications.expose())}</dd>
            </dl>
        }
    });
    let access =
        match (patient.clinical_access, patient.break_glass.as_ref()) {
            (ClinicalAccess::BreakGlass, Some(grant)) => {
                let until = local_time_ms(grant.expires_at_ms);
                let reason = grant.reason_code.label();
                Some(view! {
                <div class="notice warning" id="break-glass-active" role="status">
                    <strong>"Emergency access"</strong>{format!(" ({reason}) until {until}. ")}
                    "Every view is recorded and your clinic's admin reviews it."
                </div>
            }.into_any())
            }
            (ClinicalAccess::OutsideCareTeam, _) => {
                Some(view! { <BreakGlassPrompt patient_id=patient.id/> }.into_any())
            }
            _ => None,
        };
    // The front desk keeps the care team; it is not the chart, so no clinician sees it here.
    let care_team = ui
        .user_may(Permission::ManageCareTeam)
        .then(|| view! { <CareTeamPanel patient_id=patient.id/> });
    view! {
        <div class="card" id="patient">
            <button class="link" id="back-to-schedule" on:click=move |_| ui.patient.set(None)>"← Today's appointments"</button>
            <h1 id="patient-name">{patient.name.expose().clone()}</h1>
            {access}
            <h2>"Demographics"</h2>
            <dl class="facts">
                <dt>"Date of birth"</dt><dd>{patient.birth_date.expose().clone()}</dd>
                <dt>"MRN"</dt><dd id="patient-mrn">{patient.mrn.expose().clone()}</dd>
                <dt>"Phone"</dt><dd>{patient.phone.expose().clone()}</dd>
            </dl>
            {clinical}
            {care_team}
            <ErrorLine/>
        </div>
    }
}

#[derive(Serialize)]
struct BreakGlassArgs {
    patient_id: String,
    reason_code: String,
    reason_text: String,
}

/// For a patient outside the clinician's care team: says why the clinical summary is not
/// shown and offers to break the glass, which needs a reason and the server.
#[component]
fn BreakGlassPrompt(patient_id: uuid::Uuid) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let asking = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let code = RwSignal::new(BreakGlassReason::Emergency.as_str().to_owned());
    let text = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if text.get_untracked().trim().is_empty() {
            ui.error.set(Some("Say why you need this chart.".into()));
            return;
        }
        busy.set(true);
        ui.error.set(None);
        let args = BreakGlassArgs {
            patient_id: patient_id.to_string(),
            reason_code: code.get_untracked(),
            reason_text: text.get_untracked(),
        };
        spawn_local(async move {
            match call::<_, Patient>("break_glass", &args).await {
                Ok(p) => ui.patient.set(Some(p)),
                Err(e) => ui.fail(&e),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="notice" id="outside-care-team">
            <p>"This patient is not on your care team, so the clinical summary is not shown."</p>
            <Show when=move || !asking.get()>
                <button id="break-glass" class="danger" on:click=move |_| asking.set(true)>
                    "Break the glass…"
                </button>
            </Show>
            <Show when=move || asking.get()>
                <form id="break-glass-form" on:submit=submit>
                    <p>"Emergency access opens this chart to you for "{BREAK_GLASS_MINUTES}
                       " minutes. Every view is recorded with your reason, and your clinic's admin reviews it."</p>
                    <label>"Reason"
                        <select id="break-glass-reason" on:change=move |ev| code.set(event_target_value(&ev))>
                            {BreakGlassReason::ALL.into_iter().map(|r| view! {
                                <option value=r.as_str() selected=r == BreakGlassReason::Emergency>{r.label()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <label>"In your words"
                        <textarea id="break-glass-text" maxlength=BREAK_GLASS_TEXT_MAX.to_string() rows="3"
                            prop:value=move || text.get()
                            on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                    </label>
                    <div class="actions">
                        <button type="submit" id="break-glass-confirm" class="danger" disabled=move || busy.get()>
                            "Open the chart"
                        </button>
                        <button type="button" class="link" on:click=move |_| asking.set(false)>"Cancel"</button>
                    </div>
                </form>
            </Show>
        </div>
    }
}

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
                let offline_session = s.offline_session.then(|| view! {
                    <span class="offline" id="offline-session">"Working from this workstation's offline copy"</span>
                });
                let uploaded = s.last_upload_at.map(|t| format!("Last upload: {}", local_time(&t)));
                let countdown = s.idle_seconds_left.filter(|left| *left < 60).map(|left| {
                    view! { <span class="countdown" id="idle-countdown">{format!("Locking in {left} s")}</span> }
                });
                view! { {online} {offline_session} <span>{pending}</span> <span>{uploaded}</span> {countdown} }
            })}
        </footer>
    }
}
