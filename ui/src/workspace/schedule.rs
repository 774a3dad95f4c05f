//! The workspace of the roles that read the schedule (front desk, clinicians, billing):
//! today's appointments and the patient finder, or the chart opened from them.

use clinicdesk_protocol::wire::{AppointmentList, Patient};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use super::finder::PatientFinder;
use super::patient::PatientView;
use crate::bridge::{NoArgs, call};
use crate::state::Ui;
use crate::time::local_time;
use crate::widgets::ErrorLine;

/// Today's schedule with the patient finder above it; a chart opened from either replaces
/// both until the user goes back. The appointments are fetched each time this mounts.
#[component]
pub(crate) fn ScheduleWorkspace() -> impl IntoView {
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
