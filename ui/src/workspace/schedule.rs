//! The workspace of the roles that read the schedule (front desk, clinicians, billing): a
//! day's appointments in the clinic's time zone, by practitioner, with what the front desk
//! does from it (arrived, check in, no-show, cancel); the week; the patient finder; and the
//! desk's forms. A chart opened from any of them replaces them until the user goes back.
//! Billing, without the schedule, gets its own desk here ([`super::billing`]).
//!
//! Keyboard first: Alt+← and Alt+→ move a day, Alt+T is today, Alt+W the week, Alt+P the
//! next practitioner, Alt+N registers a patient, Alt+B books, Alt+F finds a patient, Alt+U
//! shows unsent changes.

use clinicdesk_protocol::app::ChangeSummary;
use clinicdesk_protocol::policy::Permission;
use clinicdesk_protocol::wire::{
    Appointment, AppointmentList, AppointmentStatus, Patient, PractitionerList,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use uuid::Uuid;

use super::billing::{BillingDesk, load_day_patients};
use super::booking::BookingForm;
use super::changes::ChangesPane;
use super::desk::{Desk, Notice, Pane, PatientArgs};
use super::edit_patient::EditPatientForm;
use super::finder::PatientFinder;
use super::patient::PatientView;
use super::register::RegisterForm;
use crate::bridge::{NoArgs, call};
use crate::state::Ui;
use crate::time::{add_days, clinic_time, day_label};
use crate::widgets::ErrorLine;

/// A command's day (`YYYY-MM-DD`; today at the clinic when `None`).
#[derive(Serialize)]
pub(super) struct DateArgs {
    pub(super) date: Option<String>,
}

/// Fetches the schedule of `date` (today at the clinic when `None`) into the page; for a
/// role without the schedule (billing), that day's patients with their coverage.
pub(super) fn load_day(ui: Ui, desk: Desk, date: Option<String>) {
    if !ui.user_may(Permission::ReadSchedule) {
        return load_day_patients(ui, desk, date);
    }
    spawn_local(async move {
        match call::<_, AppointmentList>("schedule", &DateArgs { date }).await {
            Ok(list) => {
                desk.date.set(Some(list.date.clone()));
                ui.schedule.set(Some(list));
            }
            Err(e) => ui.fail(&e),
        }
    });
}

/// Opens a patient's chart (audited by the core before it is shown).
pub(super) fn open_patient(ui: Ui, patient_id: Uuid) {
    ui.error.set(None);
    spawn_local(async move {
        let args = PatientArgs::of(patient_id);
        match call::<_, Patient>("open_patient", &args).await {
            Ok(p) => ui.patient.set(Some(p)),
            Err(e) => ui.fail(&e),
        }
    });
}

#[component]
pub(crate) fn ScheduleWorkspace() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = Desk::new();
    provide_context(desk);
    ui.error.set(None);
    // Billing reads no schedule: its desk (the day's patients and the finder) loads its
    // list each time it shows.
    let reads_schedule = ui.user_may(Permission::ReadSchedule);
    if reads_schedule {
        load_day(ui, desk, None);
    }
    if ui.user_may(Permission::ManageSchedule) {
        spawn_local(async move {
            if let Ok(list) = call::<_, PractitionerList>("practitioners", &NoArgs {}).await {
                desk.practitioners.set(list.practitioners);
            }
        });
    }
    // The page dropped the day (a phase change was refused, e.g. a sign-out with unsent
    // changes): fetch it again while the workspace still shows.
    Effect::new(move |first: Option<()>| {
        if reads_schedule && ui.schedule.with(Option::is_none) && first.is_some() {
            load_day(ui, desk, desk.date.get_untracked());
        }
    });
    // When the last unsent change reaches the server, the day is fetched again: it now
    // holds what the server made of them.
    let unsent = Memo::new(move |_| ui.status.get().and_then(|s| s.unsent_changes));
    Effect::new(move |before: Option<Option<u64>>| {
        let now = unsent.get();
        if before.flatten().is_some_and(|n| n > 0)
            && now == Some(0)
            && desk.pane.get_untracked() == Pane::Day
        {
            load_day(ui, desk, desk.date.get_untracked());
        }
        now
    });
    // The status bar's "unsent changes" opens the list here.
    Effect::new(move |_| {
        if ui.show_changes.get() {
            ui.show_changes.set(false);
            ui.patient.set(None);
            desk.pane.set(Pane::Changes);
        }
    });
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if !ev.alt_key() || ui.patient.get_untracked().is_some() {
            return;
        }
        let day = desk.date.get_untracked();
        let go = |date: Option<String>| {
            desk.pane.set(Pane::Day);
            load_day(ui, desk, date);
        };
        let handled = match ev.key().as_str() {
            "ArrowLeft" => {
                go(day.map(|d| add_days(&d, -1)));
                true
            }
            "ArrowRight" => {
                go(day.map(|d| add_days(&d, 1)));
                true
            }
            "t" | "T" => {
                go(None);
                true
            }
            "w" | "W" if reads_schedule => {
                desk.pane.set(Pane::Week);
                true
            }
            "n" | "N" if ui.user_may(Permission::RegisterPatients) => {
                desk.pane.set(Pane::Register);
                true
            }
            "b" | "B" if ui.user_may(Permission::ManageSchedule) => {
                desk.pane.set(Pane::Book);
                true
            }
            "u" | "U" => {
                desk.pane.set(Pane::Changes);
                true
            }
            // The next practitioner's appointments (then everyone's again).
            "p" | "P" => {
                let next = desk.practitioners.with_untracked(|list| {
                    let at = desk
                        .practitioner
                        .get_untracked()
                        .and_then(|p| list.iter().position(|x| x.user_id == p));
                    match at {
                        None => list.first().map(|p| p.user_id),
                        Some(i) => list.get(i + 1).map(|p| p.user_id),
                    }
                });
                desk.practitioner.set(next);
                true
            }
            _ => false,
        };
        if handled {
            ev.prevent_default();
        }
    });
    on_cleanup(move || keys.remove());
    view! {
        {move || match (ui.patient.get(), desk.pane.get()) {
            (Some(patient), _) => view! { <PatientView patient/> }.into_any(),
            (None, Pane::Day) if !reads_schedule => view! { <BillingDesk/> }.into_any(),
            (None, Pane::Day) => view! { <DayView/> }.into_any(),
            (None, Pane::Week) => view! { <WeekView/> }.into_any(),
            (None, Pane::Register) => view! { <RegisterForm/> }.into_any(),
            (None, Pane::Book) => view! { <BookingForm/> }.into_any(),
            (None, Pane::Changes) => view! { <ChangesPane/> }.into_any(),
            (None, Pane::EditPatient(id)) => view! { <EditPatientForm patient_id=id/> }.into_any(),
        }}
    }
}

/// The toolbar over the day and week: the day, moving between days, the practitioner, and
/// the desk's actions, each with its shortcut shown.
#[component]
fn Toolbar(week: bool) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let day = move || desk.date.get().map(|d| day_label(&d)).unwrap_or_default();
    let zone = move || ui.schedule.get().map(|l| l.time_zone).unwrap_or_default();
    let step = move |n: i64| {
        desk.pane.set(Pane::Day);
        load_day(ui, desk, desk.date.get_untracked().map(|d| add_days(&d, n)));
    };
    let may_book = ui.user_may(Permission::ManageSchedule);
    let may_register = ui.user_may(Permission::RegisterPatients);
    view! {
        <div class="toolbar" role="toolbar" aria-label="Schedule">
            <button class="outline" id="day-prev" title="Previous day (Alt+←)" on:click=move |_| step(-1)>"◀"</button>
            <button class="outline" id="day-today" title="Today (Alt+T)"
                on:click=move |_| { desk.pane.set(Pane::Day); load_day(ui, desk, None) }>"Today"</button>
            <button class="outline" id="day-next" title="Next day (Alt+→)" on:click=move |_| step(1)>"▶"</button>
            <span class="day-label" id="day-label">{day}</span>
            <span class="muted zone">{zone}</span>
            <span class="spacer"></span>
            <label class="sr-only" for="practitioner-filter">"Practitioner"</label>
            <select id="practitioner-filter" title="Whose appointments (Alt+P: the next practitioner)"
                prop:value=move || desk.practitioner.get().map(|p| p.to_string()).unwrap_or_default()
                on:change=move |ev| desk.practitioner.set(event_target_value(&ev).parse().ok())>
                <option value="">"Everyone"</option>
                {move || desk.practitioners.get().into_iter().map(|p| view! {
                    <option value=p.user_id.to_string()>{p.display_name}</option>
                }).collect_view()}
            </select>
            {if week {
                view! { <button class="outline" id="day-view" title="Day view" on:click=move |_| desk.pane.set(Pane::Day)>"Day"</button> }.into_any()
            } else {
                view! { <button class="outline" id="week-view" title="Week view (Alt+W)" on:click=move |_| desk.pane.set(Pane::Week)>"Week"</button> }.into_any()
            }}
            <Show when=move || may_register>
                <button id="register-open" title="Register a patient (Alt+N)" on:click=move |_| desk.pane.set(Pane::Register)>"New patient"</button>
            </Show>
            <Show when=move || may_book>
                <button id="book-open" title="Book an appointment (Alt+B)"
                    on:click=move |_| { desk.book_for.set(None); desk.pane.set(Pane::Book) }>"Book"</button>
            </Show>
        </div>
    }
}

/// A status as the desk says it.
pub(super) fn status_label(status: Option<AppointmentStatus>) -> &'static str {
    match status.unwrap_or_default() {
        AppointmentStatus::Booked => "Booked",
        AppointmentStatus::Arrived => "Arrived",
        AppointmentStatus::CheckedIn => "Checked in",
        AppointmentStatus::Fulfilled => "Seen",
        AppointmentStatus::Cancelled => "Cancelled",
        AppointmentStatus::NoShow => "No-show",
        AppointmentStatus::EnteredInError => "Entered in error",
    }
}

/// What the desk does to an appointment (the core's `AppointmentAction`).
#[derive(Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Action {
    Arrive,
    CheckIn,
    NoShow,
    Cancel { reason: String },
    Reschedule { date: String, time: String },
}

#[derive(Serialize)]
struct ChangeArgs {
    appointment_id: String,
    based_on: u64,
    action: Action,
}

/// Moves an appointment along, then reloads the day and says what became of the change.
fn act(ui: Ui, desk: Desk, a: &Appointment, action: Action, what: &'static str) {
    let args = ChangeArgs {
        appointment_id: a.id.to_string(),
        based_on: a.version.unwrap_or(0),
        action,
    };
    ui.error.set(None);
    spawn_local(async move {
        match call::<_, ChangeSummary>("change_appointment", &args).await {
            Ok(change) => {
                desk.tell(&change, what);
            }
            Err(e) => ui.fail(&e),
        }
        load_day(ui, desk, desk.date.get_untracked());
    });
}

/// The front desk's buttons for one appointment, by where it stands.
#[component]
fn RowActions(appointment: Appointment) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let cancelling = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    let moving = RwSignal::new(false);
    let to_date = RwSignal::new(String::new());
    let to_time = RwSignal::new(String::new());
    let status = appointment.status.unwrap_or_default();
    let a = StoredValue::new(appointment);
    let button =
        move |label: &'static str, class: &'static str, action: Action, what: &'static str| {
            view! {
                <button class=format!("small {class}") on:click=move |_| {
                    act(ui, desk, &a.get_value(), action.clone(), what)
                }>{label}</button>
            }
        };
    let may = |to| status.may_become(to) && status != to;
    view! {
        <span class="row-actions">
            {may(AppointmentStatus::Arrived).then(|| button("Arrived", "arrive", Action::Arrive, "Arrival"))}
            {may(AppointmentStatus::CheckedIn).then(|| button("Check in", "check-in", Action::CheckIn, "Check-in"))}
            {may(AppointmentStatus::NoShow).then(|| button("No-show", "no-show", Action::NoShow, "No-show"))}
            {(status == AppointmentStatus::Booked).then(|| view! {
                <button class="small outline move" on:click=move |_| {
                    let a = a.get_value();
                    to_date.set(a.starts_at.get(..10).unwrap_or_default().to_owned());
                    to_time.set(clinic_time(&a.starts_at));
                    moving.update(|m| *m = !*m);
                }>"Move…"</button>
            })}
            <Show when=move || moving.get()>
                <form class="cancel-form move-form" on:submit=move |ev| {
                    ev.prevent_default();
                    let action = Action::Reschedule { date: to_date.get_untracked(), time: to_time.get_untracked() };
                    act(ui, desk, &a.get_value(), action, "Move");
                    moving.set(false);
                }>
                    <label class="sr-only" for="move-date">"New day"</label>
                    <input id="move-date" placeholder="YYYY-MM-DD" required
                        prop:value=move || to_date.get() on:input=move |ev| to_date.set(event_target_value(&ev))/>
                    <label class="sr-only" for="move-time">"New time"</label>
                    <input id="move-time" placeholder="HH:MM" required class="short"
                        prop:value=move || to_time.get() on:input=move |ev| to_time.set(event_target_value(&ev))/>
                    <button class="small" type="submit">"Move it"</button>
                </form>
            </Show>
            {may(AppointmentStatus::Cancelled).then(|| view! {
                <button class="small outline cancel" on:click=move |_| cancelling.update(|c| *c = !*c)>"Cancel…"</button>
            })}
            <Show when=move || cancelling.get()>
                <form class="cancel-form" on:submit=move |ev| {
                    ev.prevent_default();
                    let why = reason.get_untracked();
                    act(ui, desk, &a.get_value(), Action::Cancel { reason: why }, "Cancellation");
                    cancelling.set(false);
                }>
                    <label class="sr-only" for="cancel-reason">"Why is it cancelled?"</label>
                    <input id="cancel-reason" placeholder="Why? (required)" required
                        prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                    <button class="small" type="submit">"Cancel it"</button>
                </form>
            </Show>
        </span>
    }
}

#[component]
fn DayView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let may_act = ui.user_may(Permission::ManageSchedule);
    let open = move |patient_id: Uuid| open_patient(ui, patient_id);
    let shown = move |list: &AppointmentList| -> Vec<Appointment> {
        let only = desk.practitioner.get();
        list.appointments
            .iter()
            .filter(|a| only.is_none() || a.practitioner_id == only)
            .cloned()
            .collect()
    };
    view! {
        <div class="stack wide">
        <Toolbar week=false/>
        <Notice/>
        <PatientFinder pick=move |id, _| open(id)/>
        <div class="card" id="schedule">
            <h1>{move || match (desk.date.get(), ui.schedule.get()) {
                (Some(d), Some(l)) if l.date == d => format!("Appointments · {}", day_label(&d)),
                _ => "Appointments".to_owned(),
            }}</h1>
            {move || match ui.schedule.get() {
                None => view! { <p class="muted">"Loading the schedule…"</p> }.into_any(),
                Some(list) if shown(&list).is_empty() => {
                    view! { <p class="muted" id="schedule-empty">"No appointments on this day."</p> }.into_any()
                }
                Some(list) => view! {
                    <table class="schedule" id="schedule-list">
                        <thead><tr>
                            <th>"Time"</th><th>"Patient"</th><th>"With"</th><th>"Reason"</th><th>"Status"</th>
                            {may_act.then(|| view! { <th><span class="sr-only">"Actions"</span></th> })}
                        </tr></thead>
                        <tbody>
                            {shown(&list).into_iter().map(|a| {
                                let pid = a.patient_id;
                                let status = a.status.unwrap_or_default();
                                let row_class = format!("appointment-row status-{}", status_label(a.status).to_lowercase().replace(' ', "-"));
                                let with = desk.practitioner_name(a.practitioner_id);
                                let actions = may_act.then(|| view! { <td><RowActions appointment=a.clone()/></td> });
                                view! {
                                    <tr class=row_class data-appointment-id=a.id.to_string()>
                                        <td class="time">{clinic_time(&a.starts_at)}</td>
                                        <td>
                                            // A real button: reachable with Tab and Enter.
                                            <button class="link open-patient" data-patient-id=pid.to_string()
                                                on:click=move |_| open(pid)>
                                                {a.patient_name.expose().clone()}
                                            </button>
                                        </td>
                                        <td>{with}</td>
                                        <td>{a.reason.expose().clone()}</td>
                                        <td><span class="badge appointment-status">{status_label(Some(status))}</span></td>
                                        {actions}
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            <p class="muted shortcuts">"Alt+← / Alt+→ day · Alt+T today · Alt+W week · Alt+P practitioner · Alt+F find · Alt+N new patient · Alt+B book · Alt+U unsent changes · Ctrl+L lock"</p>
            <ErrorLine/>
        </div>
        </div>
    }
}

/// Seven days from the day in view, each a short list; a day's heading opens it.
#[component]
fn WeekView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let days = RwSignal::new(Vec::<AppointmentList>::new());
    let first = desk.date.get_untracked();
    spawn_local(async move {
        let Some(first) = first else { return };
        let mut fetched = Vec::new();
        for n in 0..7 {
            let date = Some(add_days(&first, n));
            match call::<_, AppointmentList>("schedule", &DateArgs { date }).await {
                Ok(list) => fetched.push(list),
                Err(e) => {
                    ui.fail(&e);
                    break;
                }
            }
        }
        days.set(fetched);
    });
    let open_day = move |date: String| {
        desk.pane.set(Pane::Day);
        load_day(ui, desk, Some(date));
    };
    view! {
        <div class="stack wide">
        <Toolbar week=true/>
        <div class="card" id="week">
            <h1>"The week"</h1>
            {move || if days.with(Vec::is_empty) {
                view! { <p class="muted">"Loading the week…"</p> }.into_any()
            } else {
                let only = desk.practitioner.get();
                view! {
                    <div class="week-grid">
                    {days.get().into_iter().map(|list| {
                        let date = list.date.clone();
                        let rows: Vec<Appointment> = list.appointments.into_iter()
                            .filter(|a| only.is_none() || a.practitioner_id == only).collect();
                        view! {
                            <section class="week-day">
                                <h2><button class="link week-day-open" on:click={
                                    let date = date.clone();
                                    move |_| open_day(date.clone())
                                }>{day_label(&date)}</button></h2>
                                {if rows.is_empty() {
                                    view! { <p class="muted">"None"</p> }.into_any()
                                } else {
                                    view! { <ul class="plain week-list">{rows.into_iter().map(|a| view! {
                                        <li><span class="time">{clinic_time(&a.starts_at)}</span>" "
                                            {a.patient_name.expose().clone()}
                                            <span class="muted">{format!(" · {}", status_label(a.status))}</span></li>
                                    }).collect_view()}</ul> }.into_any()
                                }}
                            </section>
                        }
                    }).collect_view()}
                    </div>
                }.into_any()
            }}
            <ErrorLine/>
        </div>
        </div>
    }
}
