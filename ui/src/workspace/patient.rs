//! A patient's chart. The server decides what it holds: the clinical summary is absent for
//! roles that do not read it and for clinicians outside the care team, who are offered to
//! break the glass instead.

use clinicdesk_protocol::policy::Permission;
use clinicdesk_protocol::wire::{ClinicalAccess, Patient};
use leptos::prelude::*;

use super::break_glass::BreakGlassPrompt;
use super::care_team::CareTeamPanel;
use super::desk::{Desk, Pane};
use super::record::{CoveragePanel, HistoryPanel};
use crate::state::Ui;
use crate::time::local_time_ms;
use crate::widgets::ErrorLine;

/// One patient's chart: demographics, the clinical summary when the server sent one, how
/// the user may read it, and the care team for those who keep it.
#[component]
pub(super) fn PatientView(patient: Patient) -> impl IntoView {
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
    // The front desk's work from a chart: its details, and a booking for this patient.
    let desk = expect_context::<Desk>();
    let (id, name) = (patient.id, patient.name.expose().clone());
    let edit = ui.user_may(Permission::RegisterPatients).then(|| view! {
        <button class="outline" id="edit-patient-open" title="Change this patient's details"
            on:click=move |_| { ui.patient.set(None); desk.pane.set(Pane::EditPatient(id)) }>"Edit details"</button>
    });
    // Coverage and the record's history: the front desk's and billing's work.
    let keeps_coverage = ui.user_may(Permission::ManageCoverage);
    let coverage = keeps_coverage.then(|| {
        view! {
            <CoveragePanel patient_id=id may_change=true/>
            <HistoryPanel patient_id=id/>
        }
    });
    let book = ui.user_may(Permission::ManageSchedule).then(|| view! {
        <button class="outline" id="book-for-patient" title="Book an appointment for this patient"
            on:click=move |_| {
                desk.book_for.set(Some((id, name.clone())));
                ui.patient.set(None);
                desk.pane.set(Pane::Book);
            }>"Book"</button>
    });
    // Billing came from the day's patients, not a schedule.
    let back = if ui.user_may(Permission::ReadSchedule) {
        "← Schedule"
    } else {
        "← The day's patients"
    };
    view! {
        <div class="card" id="patient">
            <button class="link" id="back-to-schedule" on:click=move |_| ui.patient.set(None)>{back}</button>
            <div class="title-row">
                <h1 id="patient-name">{patient.name.expose().clone()}</h1>
                <span class="actions">{edit}{book}</span>
            </div>
            {access}
            <h2>"Demographics"</h2>
            <dl class="facts">
                <dt>"Date of birth"</dt><dd>{patient.birth_date.expose().clone()}</dd>
                <dt>"MRN"</dt><dd id="patient-mrn">{patient.mrn.expose().clone()}</dd>
                <dt>"Phone"</dt><dd>{patient.phone.expose().clone()}</dd>
            </dl>
            {clinical}
            {coverage}
            {care_team}
            <ErrorLine/>
        </div>
    }
}
