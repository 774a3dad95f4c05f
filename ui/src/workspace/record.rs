//! Beside a chart, for the front desk and billing: the patient's insurance coverage (add one,
//! correct one) and the history of their registration record (who changed what, when,
//! why). Read online; changes go through the queue like every other.

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::ChangeSummary;
use clinicdesk_protocol::wire::{
    CoverageFields, CoverageList, CoverageRecord, PatientHistory, SubscriberRelationship,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use uuid::Uuid;

use super::desk::{Desk, PatientArgs};
use super::register::Field;
use crate::bridge::call;
use crate::state::Ui;
use crate::time::local_date_time_ms;

#[derive(Serialize)]
struct AddArgs {
    patient_id: String,
    fields: CoverageFields,
}

#[derive(Serialize)]
struct UpdateArgs {
    coverage_id: String,
    patient_id: String,
    based_on: u64,
    fields: CoverageFields,
    reason: Phi<String>,
}

fn relationship(r: Option<SubscriberRelationship>) -> &'static str {
    match r.unwrap_or_default() {
        SubscriberRelationship::Own => "self",
        SubscriberRelationship::Spouse => "spouse",
        SubscriberRelationship::Child => "child",
        SubscriberRelationship::Parent => "parent",
        SubscriberRelationship::Other => "other",
    }
}

fn load(ui: Ui, patient_id: Uuid, list: RwSignal<Option<CoverageList>>) {
    spawn_local(async move {
        let args = PatientArgs::of(patient_id);
        match call::<_, CoverageList>("coverages", &args).await {
            Ok(l) => list.set(Some(l)),
            Err(e) => ui.fail(&e),
        }
    });
}

/// The patient's coverages, and a form to add one or correct one.
#[component]
pub(super) fn CoveragePanel(patient_id: Uuid, may_change: bool) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let list = RwSignal::new(None::<CoverageList>);
    // The coverage being corrected, or a new one (`None` inside), while the form shows.
    let editing = RwSignal::new(None::<Option<CoverageRecord>>);
    load(ui, patient_id, list);
    let (payer, member, group, start, end) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    let open_form = move |record: Option<CoverageRecord>| {
        let f = record
            .as_ref()
            .map(|r| r.fields.clone())
            .unwrap_or_default();
        payer.set(f.payer.unwrap_or_default());
        member.set(f.member_id.unwrap_or_default());
        group.set(f.group.unwrap_or_default());
        start.set(f.period_start.unwrap_or_default());
        end.set(f.period_end.unwrap_or_default());
        editing.set(Some(record));
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = |s: RwSignal<String>| Some(s.get_untracked().trim().to_owned());
        let typed = CoverageFields {
            payer: text(payer),
            member_id: text(member),
            group: text(group),
            period_start: text(start),
            period_end: text(end),
            ..CoverageFields::default()
        };
        let Some(target) = editing.get_untracked() else {
            return;
        };
        spawn_local(async move {
            let answer = match target {
                None => {
                    let args = AddArgs {
                        patient_id: patient_id.to_string(),
                        fields: typed,
                    };
                    call::<_, ChangeSummary>("add_coverage", &args).await
                }
                Some(record) => {
                    // Only what changed is sent.
                    let mut fields = typed;
                    let before = record.fields.clone().filled();
                    let mut after = before.clone();
                    after.apply(&fields);
                    let differ = before.differing(&after);
                    fields.retain(|name| differ.contains(&name));
                    let args = UpdateArgs {
                        coverage_id: record.id.to_string(),
                        patient_id: patient_id.to_string(),
                        based_on: record.version,
                        fields,
                        reason: Phi::new(String::new()),
                    };
                    call::<_, ChangeSummary>("update_coverage", &args).await
                }
            };
            match answer {
                Ok(change) => {
                    desk.tell(&change, "Coverage");
                    editing.set(None);
                    load(ui, patient_id, list);
                }
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <section class="coverage" id="coverage">
            <div class="title-row">
                <h2>"Coverage"</h2>
                <Show when=move || may_change>
                    <button class="small outline" id="coverage-add" on:click=move |_| open_form(None)>"Add coverage"</button>
                </Show>
            </div>
            {move || match list.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(l) if l.coverages.is_empty() => view! { <p class="muted" id="coverage-none">"No coverage on file."</p> }.into_any(),
                Some(l) => view! {
                    <table class="schedule" id="coverage-list">
                        <thead><tr><th>"Payer"</th><th>"Member id"</th><th>"Group"</th><th>"Subscriber"</th><th>"From"</th><th>"To"</th><th></th></tr></thead>
                        <tbody>
                            {l.coverages.into_iter().map(|c| {
                                let f = c.fields.clone();
                                let record = c.clone();
                                view! {
                                    <tr class="coverage-row">
                                        <td>{f.payer.unwrap_or_default()}</td>
                                        <td>{f.member_id.unwrap_or_default()}</td>
                                        <td>{f.group.unwrap_or_default()}</td>
                                        <td>{relationship(f.subscriber_relationship)}</td>
                                        <td>{f.period_start.unwrap_or_default()}</td>
                                        <td>{f.period_end.unwrap_or_default()}</td>
                                        <td>{match (may_change, c.version) {
                                            // Added here and not on the server yet: it has no
                                            // version there to correct.
                                            (_, 0) => Some(view! { <span class="muted coverage-unsent">"Not sent yet"</span> }.into_any()),
                                            (true, _) => Some(view! {
                                                <button class="small outline coverage-edit" on:click=move |_| open_form(Some(record.clone()))>"Correct"</button>
                                            }.into_any()),
                                            (false, _) => None,
                                        }}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            <Show when=move || editing.with(Option::is_some)>
                <form class="coverage-form" id="coverage-form" on:submit=submit>
                    <div class="form-columns">
                        <fieldset>
                            <Field id="coverage-payer" label="Payer" value=payer required=true/>
                            <Field id="coverage-member" label="Member id" value=member required=true/>
                            <Field id="coverage-group" label="Group" value=group/>
                        </fieldset>
                        <fieldset>
                            <Field id="coverage-start" label="From" value=start placeholder="YYYY-MM-DD"/>
                            <Field id="coverage-end" label="To (empty while it runs)" value=end placeholder="YYYY-MM-DD"/>
                        </fieldset>
                    </div>
                    <div class="actions">
                        <button type="submit" id="coverage-submit">"Save coverage"</button>
                        <button type="button" class="outline" on:click=move |_| editing.set(None)>"Cancel"</button>
                    </div>
                </form>
            </Show>
        </section>
    }
}

/// Every version of the patient's registration record, newest first: when, by which
/// role, what changed, and why.
#[component]
pub(super) fn HistoryPanel(patient_id: Uuid) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let history = RwSignal::new(None::<PatientHistory>);
    let shown = RwSignal::new(false);
    let me = ui
        .status
        .get_untracked()
        .and_then(|s| s.user)
        .map(|u| u.user_id);
    let open = move |_| {
        shown.set(true);
        spawn_local(async move {
            let args = PatientArgs::of(patient_id);
            match call::<_, PatientHistory>("patient_history", &args).await {
                Ok(h) => history.set(Some(h)),
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <section class="history" id="history">
            <div class="title-row">
                <h2>"History of changes"</h2>
                <Show when=move || !shown.get()>
                    <button class="small outline" id="history-open" on:click=open>"Show"</button>
                </Show>
            </div>
            {move || history.get().map(|h| view! {
                <table class="schedule" id="history-list">
                    <thead><tr><th>"Version"</th><th>"When"</th><th>"By"</th><th>"Changed"</th><th>"Why"</th></tr></thead>
                    <tbody>
                        {h.versions.into_iter().rev().map(|v| {
                            let by = if Some(v.actor_user_id) == me {
                                "you".to_owned()
                            } else {
                                v.actor_role.as_str().replace('_', " ")
                            };
                            view! {
                                <tr class="history-row">
                                    <td>{v.version}</td>
                                    <td>{local_date_time_ms(v.recorded_at_ms)}</td>
                                    <td>{by}</td>
                                    <td>{v.changed.join(", ").replace('_', " ")}</td>
                                    <td>{v.reason.expose().clone()}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </section>
    }
}
