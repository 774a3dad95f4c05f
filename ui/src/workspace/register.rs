//! Registering a patient: the form, then what became of it. A likely duplicate is asked as
//! "Is this the same person?" with the candidates beside what was typed; the user opens the
//! one it is (the new registration is discarded), or says it is a new person.

use clinicdesk_protocol::app::{ChangeState, ChangeSummary, UnsentChanges};
use clinicdesk_protocol::wire::{
    Address, EmergencyContact, Gender, HumanName, PatientFields, PatientRecord,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use uuid::Uuid;

use super::desk::{Desk, Pane, PatientArgs};
use super::schedule::open_patient;
use crate::bridge::call;
use crate::state::Ui;
use crate::widgets::{ErrorLine, focus_on_mount};

#[derive(Serialize)]
struct RegisterArgs {
    fields: PatientFields,
}

#[derive(Serialize)]
pub(super) struct ChangeIdArgs {
    pub(super) change_id: String,
}

/// One text field of a form: its signal, bound both ways.
#[component]
pub(super) fn Field(
    id: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = false)] required: bool,
    #[prop(optional)] node_ref: NodeRef<leptos::html::Input>,
    #[prop(optional)] placeholder: &'static str,
) -> impl IntoView {
    view! {
        <label for=id>{label}{required.then_some(" *")}</label>
        <input id=id type=kind required=required autocomplete="off" node_ref=node_ref placeholder=placeholder
            prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))/>
    }
}

/// The form's signals: one per field the front desk registers.
#[derive(Clone, Copy)]
pub(super) struct PatientForm {
    pub(super) given: RwSignal<String>,
    pub(super) family: RwSignal<String>,
    pub(super) preferred: RwSignal<String>,
    pub(super) birth_date: RwSignal<String>,
    pub(super) gender: RwSignal<String>,
    pub(super) phone: RwSignal<String>,
    pub(super) email: RwSignal<String>,
    pub(super) line: RwSignal<String>,
    pub(super) city: RwSignal<String>,
    pub(super) state: RwSignal<String>,
    pub(super) postal_code: RwSignal<String>,
    pub(super) language: RwSignal<String>,
    pub(super) contact_name: RwSignal<String>,
    pub(super) contact_relationship: RwSignal<String>,
    pub(super) contact_phone: RwSignal<String>,
    /// What the form does not show of the address as read (its country, and its lines as
    /// stored, which the one street field joins): kept as they were, so that saving other
    /// details does not change the address.
    country: RwSignal<String>,
    lines: RwSignal<Vec<String>>,
}

fn gender_code(g: Gender) -> &'static str {
    match g {
        Gender::Male => "male",
        Gender::Female => "female",
        Gender::Other => "other",
        Gender::Unknown => "unknown",
    }
}

impl PatientForm {
    pub(super) fn new() -> Self {
        let s = || RwSignal::new(String::new());
        Self {
            given: s(),
            family: s(),
            preferred: s(),
            birth_date: s(),
            gender: RwSignal::new("unknown".to_owned()),
            phone: s(),
            email: s(),
            line: s(),
            city: s(),
            state: s(),
            postal_code: s(),
            language: s(),
            contact_name: s(),
            contact_relationship: s(),
            contact_phone: s(),
            country: s(),
            lines: RwSignal::new(Vec::new()),
        }
    }

    /// Filled from a record as the user's role may read it.
    pub(super) fn of(f: &PatientFields) -> Self {
        let form = Self::new();
        if let Some(n) = &f.name {
            form.given.set(n.given.clone());
            form.family.set(n.family.clone());
            form.preferred.set(n.preferred.clone());
        }
        let set = |s: RwSignal<String>, v: &Option<String>| s.set(v.clone().unwrap_or_default());
        set(form.birth_date, &f.birth_date);
        set(form.phone, &f.phone);
        set(form.email, &f.email);
        set(form.language, &f.language);
        form.gender
            .set(gender_code(f.gender.unwrap_or_default()).to_owned());
        if let Some(a) = &f.address {
            form.line.set(a.line.join(", "));
            form.city.set(a.city.clone());
            form.state.set(a.state.clone());
            form.postal_code.set(a.postal_code.clone());
            form.country.set(a.country.clone());
            form.lines.set(a.line.clone());
        }
        if let Some(c) = &f.emergency_contact {
            form.contact_name.set(c.name.clone());
            form.contact_relationship.set(c.relationship.clone());
            form.contact_phone.set(c.phone.clone());
        }
        form
    }

    /// The fields as typed (every one the form holds).
    pub(super) fn fields(&self) -> PatientFields {
        let text = |s: RwSignal<String>| s.get_untracked().trim().to_owned();
        let gender = match text(self.gender).as_str() {
            "male" => Gender::Male,
            "female" => Gender::Female,
            "other" => Gender::Other,
            _ => Gender::Unknown,
        };
        let line = text(self.line);
        let read = self.lines.get_untracked();
        let line = if line == read.join(", ") {
            read
        } else if line.is_empty() {
            Vec::new()
        } else {
            vec![line]
        };
        PatientFields {
            name: Some(HumanName {
                given: text(self.given),
                family: text(self.family),
                preferred: text(self.preferred),
            }),
            birth_date: Some(text(self.birth_date)),
            gender: Some(gender),
            phone: Some(text(self.phone)),
            email: Some(text(self.email)),
            address: Some(Address {
                line,
                city: text(self.city),
                state: text(self.state),
                postal_code: text(self.postal_code),
                country: self.country.get_untracked(),
            }),
            language: Some(text(self.language)),
            emergency_contact: Some(EmergencyContact {
                name: text(self.contact_name),
                relationship: text(self.contact_relationship),
                phone: text(self.contact_phone),
            }),
            ..PatientFields::default()
        }
    }

    /// The fields typed for a new patient: those left empty are not sent (an empty phone
    /// must not look like every other patient without one).
    pub(super) fn typed(&self) -> PatientFields {
        let mut f = self.fields();
        let empty_text = |v: &Option<String>| v.as_deref().is_some_and(str::is_empty);
        if empty_text(&f.phone) {
            f.phone = None;
        }
        if empty_text(&f.email) {
            f.email = None;
        }
        if empty_text(&f.language) {
            f.language = None;
        }
        if f.address.as_ref().is_some_and(|a| *a == Address::default()) {
            f.address = None;
        }
        if f.emergency_contact
            .as_ref()
            .is_some_and(|c| *c == EmergencyContact::default())
        {
            f.emergency_contact = None;
        }
        f
    }
}

/// The form's fields, laid out in two columns.
#[component]
pub(super) fn PatientFieldsForm(form: PatientForm) -> impl IntoView {
    let first = NodeRef::<leptos::html::Input>::new();
    focus_on_mount(first);
    view! {
        <div class="form-columns">
            <fieldset>
                <legend>"Name and birth"</legend>
                <Field id="reg-given" label="Given name" value=form.given required=true node_ref=first/>
                <Field id="reg-family" label="Family name" value=form.family required=true/>
                <Field id="reg-preferred" label="Preferred name" value=form.preferred/>
                <Field id="reg-birth-date" label="Date of birth" value=form.birth_date required=true placeholder="YYYY-MM-DD"/>
                <label for="reg-gender">"Gender"</label>
                <select id="reg-gender" prop:value=move || form.gender.get()
                    on:change=move |ev| form.gender.set(event_target_value(&ev))>
                    <option value="unknown">"Unknown"</option>
                    <option value="female">"Female"</option>
                    <option value="male">"Male"</option>
                    <option value="other">"Other"</option>
                </select>
                <Field id="reg-language" label="Preferred language (e.g. en, es)" value=form.language/>
            </fieldset>
            <fieldset>
                <legend>"Contact"</legend>
                <Field id="reg-phone" label="Phone" value=form.phone kind="tel"/>
                <Field id="reg-email" label="Email" value=form.email kind="email"/>
                <Field id="reg-line" label="Street address" value=form.line/>
                <Field id="reg-city" label="City" value=form.city/>
                <Field id="reg-state" label="State" value=form.state/>
                <Field id="reg-postal" label="Postal code" value=form.postal_code/>
            </fieldset>
            <fieldset>
                <legend>"Emergency contact"</legend>
                <Field id="reg-contact-name" label="Name" value=form.contact_name/>
                <Field id="reg-contact-relationship" label="Relationship" value=form.contact_relationship/>
                <Field id="reg-contact-phone" label="Phone" value=form.contact_phone kind="tel"/>
            </fieldset>
        </div>
    }
}

#[component]
pub(super) fn RegisterForm() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let form = PatientForm::new();
    let busy = RwSignal::new(false);
    let duplicate = RwSignal::new(None::<ChangeSummary>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        ui.error.set(None);
        busy.set(true);
        let args = RegisterArgs {
            fields: form.typed(),
        };
        let name = format!(
            "{} {}",
            form.given.get_untracked().trim(),
            form.family.get_untracked().trim()
        );
        spawn_local(async move {
            match call::<_, ChangeSummary>("register_patient", &args).await {
                Ok(change) if matches!(change.state, ChangeState::PossibleDuplicate { .. }) => {
                    duplicate.set(Some(change));
                }
                Ok(change) => {
                    if desk.tell(&change, "Registration") {
                        desk.book_for.set(Some((change.record_id, name)));
                        desk.pane.set(Pane::Book);
                    }
                }
                Err(e) => ui.fail(&e),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="card wide" id="register">
            <button class="link" id="register-back" on:click=move |_| desk.pane.set(Pane::Day)>"← Schedule"</button>
            <h1>"New patient"</h1>
            {move || match duplicate.get() {
                Some(change) => view! { <SamePerson change/> }.into_any(),
                None => view! {
                    <form id="register-form" on:submit=submit>
                        <PatientFieldsForm form/>
                        <div class="actions">
                            <button type="submit" id="register-submit" disabled=move || busy.get()>"Register"</button>
                            <button type="button" class="outline" on:click=move |_| desk.pane.set(Pane::Day)>"Cancel"</button>
                        </div>
                    </form>
                }.into_any(),
            }}
            <ErrorLine/>
        </div>
    }
}

/// "Is this the same person?": each candidate's name, birth date and phone (each read is
/// audited), with the way out either way.
#[component]
pub(super) fn SamePerson(change: ChangeSummary) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let ChangeState::PossibleDuplicate { candidates } = change.state.clone() else {
        return view! { <p class="muted">"Nothing to check."</p> }.into_any();
    };
    let records = RwSignal::new(Vec::<PatientRecord>::new());
    spawn_local(async move {
        let mut read = Vec::new();
        for id in candidates {
            let args = PatientArgs::of(id);
            match call::<_, PatientRecord>("patient_record", &args).await {
                Ok(r) => read.push(r),
                Err(e) => ui.fail(&e),
            }
        }
        records.set(read);
    });
    let change_id = change.change_id;
    let same = move |patient: Uuid| {
        spawn_local(async move {
            let args = ChangeIdArgs {
                change_id: change_id.to_string(),
            };
            match call::<_, UnsentChanges>("discard_change", &args).await {
                Ok(_) => {
                    desk.notice.set(Some(
                        "Not registered again: this is the patient already on file.".into(),
                    ));
                    desk.pane.set(Pane::Day);
                    open_patient(ui, patient);
                }
                Err(e) => ui.fail(&e),
            }
        });
    };
    let new_person = move |_| {
        spawn_local(async move {
            let args = ChangeIdArgs {
                change_id: change_id.to_string(),
            };
            match call::<_, ChangeSummary>("confirm_new_person", &args).await {
                Ok(change) => {
                    if desk.tell(&change, "Registration") {
                        desk.pane.set(Pane::Day);
                    }
                }
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <div class="notice warning" id="same-person" role="alertdialog" aria-labelledby="same-person-title">
            <h2 id="same-person-title">"Is this the same person?"</h2>
            <p>"A patient with the same name and date of birth, or the same phone, is already registered. Registering them twice splits their chart."</p>
            <table class="schedule" id="duplicate-candidates">
                <thead><tr><th>"Name"</th><th>"Date of birth"</th><th>"Phone"</th><th>"MRN"</th><th></th></tr></thead>
                <tbody>
                    {move || records.get().into_iter().map(|r| {
                        let f = r.fields;
                        let id = r.id;
                        view! {
                            <tr class="duplicate-candidate">
                                <td>{f.name.map(|n| n.display()).unwrap_or_default()}</td>
                                <td>{f.birth_date.unwrap_or_default()}</td>
                                <td>{f.phone.unwrap_or_default()}</td>
                                <td>{f.mrn.unwrap_or_default()}</td>
                                <td><button class="small same-person" on:click=move |_| same(id)>"Same person"</button></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <div class="actions">
                <button id="new-person" on:click=new_person>"No, register a new person"</button>
            </div>
        </div>
    }
    .into_any()
}
