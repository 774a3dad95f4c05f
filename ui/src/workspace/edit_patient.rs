//! Editing a patient's registration details (demographics, contact, emergency contact): the
//! record as last read (from the server, or offline from this workstation's copy), and only
//! the fields the user changed are sent, based on the version they saw.

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::ChangeSummary;
use clinicdesk_protocol::wire::{PatientFields, PatientRecord};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use uuid::Uuid;

use super::desk::{Desk, Pane, PatientArgs};
use super::register::{PatientFieldsForm, PatientForm};
use super::schedule::open_patient;
use crate::bridge::call;
use crate::state::Ui;
use crate::widgets::ErrorLine;

#[derive(Serialize)]
struct UpdateArgs {
    patient_id: String,
    based_on: u64,
    fields: PatientFields,
    reason: Phi<String>,
}

/// The fields of `typed` that differ from `before` (the record as read): what to send.
fn changed(before: &PatientFields, typed: PatientFields) -> PatientFields {
    let mut change = typed;
    let before = before.clone().filled();
    let mut after = before.clone();
    after.apply(&change);
    let differ = before.differing(&after);
    change.retain(|name| differ.contains(&name));
    change
}

#[component]
pub(super) fn EditPatientForm(patient_id: Uuid) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let record = RwSignal::new(None::<PatientRecord>);
    let reason = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    spawn_local(async move {
        let args = PatientArgs::of(patient_id);
        match call::<_, PatientRecord>("patient_record", &args).await {
            Ok(r) => record.set(Some(r)),
            Err(e) => ui.fail(&e),
        }
    });
    let back = move || {
        desk.pane.set(Pane::Day);
        open_patient(ui, patient_id);
    };
    view! {
        <div class="card wide" id="edit-patient">
            <button class="link" id="edit-back" on:click=move |_| back()>"← Chart"</button>
            <h1>"Patient details"</h1>
            {move || record.get().map(|r| {
                let form = PatientForm::of(&r.fields);
                let before = r.fields.clone();
                let version = r.version;
                let submit = move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    ui.error.set(None);
                    let fields = changed(&before, form.fields());
                    if fields.present().is_empty() {
                        desk.notice.set(Some("Nothing changed.".into()));
                        back();
                        return;
                    }
                    let args = UpdateArgs {
                        patient_id: patient_id.to_string(),
                        based_on: version,
                        fields,
                        reason: Phi::new(reason.get_untracked().trim().to_owned()),
                    };
                    busy.set(true);
                    spawn_local(async move {
                        match call::<_, ChangeSummary>("update_patient", &args).await {
                            Ok(change) => {
                                desk.tell(&change, "Patient details");
                                back();
                            }
                            Err(e) => ui.fail(&e),
                        }
                        busy.set(false);
                    });
                };
                view! {
                    <p class="muted">{format!("MRN {} · version {}", r.fields.mrn.clone().unwrap_or_default(), r.version)}</p>
                    <form id="edit-patient-form" on:submit=submit>
                        <PatientFieldsForm form/>
                        <label for="edit-reason">"Why (optional, kept in the history)"</label>
                        <input id="edit-reason" autocomplete="off" prop:value=move || reason.get()
                            on:input=move |ev| reason.set(event_target_value(&ev))/>
                        <div class="actions">
                            <button type="submit" id="edit-submit" disabled=move || busy.get()>"Save"</button>
                            <button type="button" class="outline" on:click=move |_| back()>"Cancel"</button>
                        </div>
                    </form>
                }
            })}
            <ErrorLine/>
        </div>
    }
}
