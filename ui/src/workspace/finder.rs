//! The patient finder: as the user types, the clinic's patients on the server when online,
//! or offline those in this user's encrypted copy on this workstation; it says which.
//! Alt+F puts the cursor in it.

use clinicdesk_protocol::app::{PatientSearchResults, SearchSource};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::call;
use crate::state::Ui;

#[derive(Serialize)]
struct SearchArgs {
    query: String,
}

/// Fewest characters typed before the finder searches by itself.
const TYPED_MIN: usize = 3;

/// Find a patient by the start of a name, a date of birth, an MRN or a phone number;
/// `pick` gets the chosen patient's id and name (to open the chart, or to book for them).
#[component]
pub(super) fn PatientFinder(
    pick: impl Fn(uuid::Uuid, String) + Copy + Send + Sync + 'static,
    #[prop(default = "Open")] action: &'static str,
) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let query = RwSignal::new(String::new());
    let found = RwSignal::new(None::<PatientSearchResults>);
    // Only the answer to the latest text is shown (answers can overtake each other).
    let asked = StoredValue::new(0u32);
    let input = NodeRef::<leptos::html::Input>::new();
    let search = move || {
        let text = query.get_untracked();
        asked.update_value(|n| *n += 1);
        let mine = asked.get_value();
        ui.error.set(None);
        spawn_local(async move {
            let answer =
                call::<_, PatientSearchResults>("search_patients", &SearchArgs { query: text })
                    .await;
            if asked.get_value() != mine {
                return;
            }
            match answer {
                Ok(results) => found.set(Some(results)),
                Err(e) => ui.fail(&e),
            }
        });
    };
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.alt_key()
            && ev.key().eq_ignore_ascii_case("f")
            && let Some(el) = input.get_untracked()
        {
            ev.prevent_default();
            let _ = el.focus();
        }
    });
    on_cleanup(move || keys.remove());
    view! {
        <div class="card" id="patient-finder">
            <form class="inline" on:submit=move |ev| { ev.prevent_default(); search() }>
                <label for="patient-query">"Find a patient (Alt+F)"</label>
                <input id="patient-query" type="search" node_ref=input autocomplete="off"
                    placeholder="Name, date of birth (YYYY-MM-DD), MRN or phone"
                    prop:value=move || query.get()
                    on:input=move |ev| {
                        query.set(event_target_value(&ev));
                        if query.with_untracked(|q| q.trim().chars().count() >= TYPED_MIN) {
                            search();
                        }
                    }/>
                <button id="patient-search" type="submit">"Search"</button>
            </form>
            {move || found.get().map(|results| {
                let source = match results.source {
                    SearchSource::Clinic => view! { <p class="muted" id="patient-source">"Searched the whole clinic."</p> }.into_any(),
                    SearchSource::ThisWorkstation => view! {
                        <p class="offline-note" id="patient-source">"Offline: searched only the patients on this workstation (those on your schedule or opened here)."</p>
                    }.into_any(),
                };
                if results.patients.is_empty() {
                    view! { {source} <p class="muted" id="patient-no-match">"No patient matches."</p> }.into_any()
                } else {
                    view! {
                        {source}
                        <table class="schedule" id="patient-results">
                            <thead><tr><th>"Patient"</th><th>"Date of birth"</th><th>"MRN"</th></tr></thead>
                            <tbody>
                                {results.patients.into_iter().map(|p| {
                                    let pid = p.id;
                                    let name = p.name.expose().clone();
                                    let shown = name.clone();
                                    view! {
                                        <tr>
                                            <td><button class="link found-patient" data-patient-id=pid.to_string()
                                                title=action on:click=move |_| pick(pid, name.clone())>{shown}</button></td>
                                            <td>{p.birth_date.expose().clone()}</td>
                                            <td>{p.mrn.expose().clone()}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }
            })}
        </div>
    }
}
