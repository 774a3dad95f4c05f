//! The patient finder: a search of this user's encrypted cache on this workstation, so it
//! finds only patients whose chart they opened here before, and works offline.

use clinicdesk_protocol::app::PatientSearchResults;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::call;
use crate::state::Ui;

#[derive(Serialize)]
struct SearchArgs {
    query: String,
}

/// Find a patient among those on this workstation for this user (their encrypted cache):
/// by the start of a name, a date of birth or an MRN. Works offline.
#[component]
pub(super) fn PatientFinder(
    open: impl Fn(uuid::Uuid) + Copy + Send + Sync + 'static,
) -> impl IntoView {
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
