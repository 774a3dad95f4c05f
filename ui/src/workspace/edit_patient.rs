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

#[cfg(test)]
mod tests {
    use clinicdesk_protocol::wire::{Address, EmergencyContact, Gender, HumanName};

    use super::*;

    fn on_file() -> PatientFields {
        PatientFields {
            mrn: Some("MRN-100001".into()),
            name: Some(HumanName {
                given: "Testa".into(),
                family: "Quillfeather".into(),
                preferred: String::new(),
            }),
            birth_date: Some("1961-04-12".into()),
            gender: Some(Gender::Female),
            phone: Some("555-0110".into()),
            email: Some("patient1@example.invalid".into()),
            address: Some(Address {
                line: vec!["100 Synthetic Lane".into(), "Apt 2".into()],
                city: "Demoville".into(),
                state: "ZZ".into(),
                postal_code: "01000".into(),
                country: "US".into(),
            }),
            language: Some("en".into()),
            emergency_contact: Some(EmergencyContact {
                name: "Contact of patient 1".into(),
                relationship: "spouse".into(),
                phone: "555-0210".into(),
            }),
            ..PatientFields::default()
        }
    }

    /// Saved untouched, the form sends nothing: what it does not show of the address (the
    /// country, the lines its one street field joins) stays as it was.
    #[test]
    fn an_untouched_form_changes_nothing() {
        let before = on_file();
        let form = PatientForm::of(&before);
        assert_eq!(
            changed(&before, form.fields()).present(),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn a_new_phone_sends_the_phone_alone() {
        let before = on_file();
        let form = PatientForm::of(&before);
        form.phone.set("555-0177".into());
        let change = changed(&before, form.fields());
        assert_eq!(change.present(), ["phone"]);
        assert_eq!(change.phone.as_deref(), Some("555-0177"));
    }

    /// A street typed anew replaces the lines, and the country stays.
    #[test]
    fn a_new_street_keeps_the_country() {
        let before = on_file();
        let form = PatientForm::of(&before);
        form.line.set("7 Other Road".into());
        let change = changed(&before, form.fields());
        let address = change.address.unwrap();
        assert_eq!(address.line, ["7 Other Road"]);
        assert_eq!(address.country, "US");
    }
}
