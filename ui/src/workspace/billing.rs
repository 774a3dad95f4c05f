//! Billing's desk: the day's patients with their insurance coverage (no appointment times,
//! practitioners or reasons: billing does not read the schedule), and the finder for a claim
//! in hand. A patient opens as billing reads the chart: demographics and coverage, where a
//! coverage is added or corrected. The front desk's day list and week are elsewhere.

use clinicdesk_protocol::wire::{CoverageRecord, DayPatient, DayPatients};
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::desk::{Desk, Notice};
use super::finder::PatientFinder;
use super::schedule::{DateArgs, open_patient};
use crate::bridge::call;
use crate::state::Ui;
use crate::time::{add_days, day_label};
use crate::widgets::ErrorLine;

/// Where billing's list of the day's patients stands. Its own state, not the error line's:
/// another part of the screen (the finder) clears that line when it works.
#[derive(Clone, Default)]
pub(super) enum DayList {
    #[default]
    Loading,
    /// The server could not give it (offline, or refused): the finder is the way.
    Unavailable,
    Loaded(DayPatients),
}

/// Fetches the patients booked on `date` (today at the clinic when `None`) into the desk.
pub(super) fn load_day_patients(ui: Ui, desk: Desk, date: Option<String>) {
    spawn_local(async move {
        match call::<_, DayPatients>("day_patients", &DateArgs { date }).await {
            Ok(list) => {
                ui.error.set(None);
                desk.date.set(Some(list.date.clone()));
                desk.day_patients.set(DayList::Loaded(list));
            }
            Err(e) => {
                desk.day_patients.set(DayList::Unavailable);
                ui.fail(&e);
            }
        }
    });
}

/// A coverage in one line: payer, member id, group, and whether it is in force.
fn coverage_line(c: &CoverageRecord) -> String {
    let f = &c.fields;
    let mut line = f.payer.clone().unwrap_or_default();
    if let Some(member) = f.member_id.as_deref().filter(|m| !m.is_empty()) {
        line.push_str(&format!(" · member {member}"));
    }
    if let Some(group) = f.group.as_deref().filter(|g| !g.is_empty()) {
        line.push_str(&format!(" · group {group}"));
    }
    if f.active == Some(false) {
        line.push_str(" (ended)");
    }
    line
}

#[component]
pub(super) fn BillingDesk() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    // Fetched each time the desk shows (back from a chart, a coverage changed there is
    // listed), for the day in view.
    load_day_patients(ui, desk, desk.date.get_untracked());
    let step = move |n: i64| {
        let day = desk.date.get_untracked().map(|d| add_days(&d, n));
        load_day_patients(ui, desk, day);
    };
    let heading = move || match desk.date.get() {
        Some(d) => format!("The day's patients · {}", day_label(&d)),
        None => "The day's patients".to_owned(),
    };
    view! {
        <div class="stack wide">
            <div class="toolbar" role="toolbar" aria-label="Day">
                <button class="outline" id="day-prev" title="Previous day (Alt+←)" on:click=move |_| step(-1)>"◀"</button>
                <button class="outline" id="day-today" title="Today (Alt+T)"
                    on:click=move |_| load_day_patients(ui, desk, None)>"Today"</button>
                <button class="outline" id="day-next" title="Next day (Alt+→)" on:click=move |_| step(1)>"▶"</button>
                <span class="day-label" id="day-label">{move || desk.date.get().map(|d| day_label(&d)).unwrap_or_default()}</span>
                <span class="muted zone">{move || desk.day_patients.with(|l| match l {
                    DayList::Loaded(l) => l.time_zone.clone(),
                    _ => String::new(),
                })}</span>
            </div>
            <Notice/>
            <div class="card" id="billing">
                <h1>{heading}</h1>
                <p class="lead">"Everyone booked on this day, with their insurance coverage. Open a patient to add or correct a coverage."</p>
                {move || match desk.day_patients.get() {
                    DayList::Unavailable => {
                        view! { <p class="muted" id="day-patients-unavailable">"The day's patients are listed only while the server can be reached. Find a patient below."</p> }.into_any()
                    }
                    DayList::Loading => view! { <p class="muted">"Loading the day's patients…"</p> }.into_any(),
                    DayList::Loaded(list) if list.patients.is_empty() => {
                        view! { <p class="muted" id="day-patients-empty">"No one is booked on this day."</p> }.into_any()
                    }
                    DayList::Loaded(list) => view! { <DayPatientTable patients=list.patients/> }.into_any(),
                }}
                <p class="muted shortcuts">"Alt+← / Alt+→ day · Alt+T today · Alt+F find · Alt+U unsent changes · Ctrl+L lock"</p>
                <ErrorLine/>
            </div>
            <PatientFinder pick=move |id, _| open_patient(ui, id)/>
        </div>
    }
}

#[component]
fn DayPatientTable(patients: Vec<DayPatient>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <table class="schedule" id="day-patients">
            <thead><tr>
                <th>"Patient"</th><th>"Born"</th><th>"MRN"</th><th>"Coverage"</th>
            </tr></thead>
            <tbody>
                {patients.into_iter().map(|p| {
                    let id = p.record.id;
                    let f = p.record.fields;
                    let name = f.name.map(|n| n.display()).unwrap_or_default();
                    let coverages: Vec<String> = p.coverages.iter()
                        .filter(|c| c.fields.active != Some(false))
                        .map(coverage_line)
                        .collect();
                    let uninsured = coverages.is_empty();
                    view! {
                        <tr class="day-patient" data-patient-id=id.to_string()>
                            <td>
                                <button class="link open-patient" data-patient-id=id.to_string()
                                    on:click=move |_| open_patient(ui, id)>{name}</button>
                            </td>
                            <td>{f.birth_date.unwrap_or_default()}</td>
                            <td>{f.mrn.unwrap_or_default()}</td>
                            <td class="coverage">
                                {if uninsured {
                                    view! { <span class="badge warn no-coverage">"No coverage on file"</span> }.into_any()
                                } else {
                                    coverages.into_iter().map(|c| view! { <div>{c}</div> }).collect_view().into_any()
                                }}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
