//! The patient's care team, for the front desk: who reads this chart's clinical summary
//! without breaking the glass, and adding or removing a clinician. Staff names only, no
//! PHI; online only (the server records every look and change).

use clinicdesk_protocol::wire::CareTeam;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use uuid::Uuid;

use crate::bridge::call;
use crate::state::Ui;

#[derive(Serialize)]
struct TeamArgs {
    patient_id: String,
}

#[derive(Serialize)]
struct ChangeArgs {
    patient_id: String,
    clinician_id: String,
}

/// Runs a care-team change and shows the team the core answers with.
fn change_team(
    ui: Ui,
    team: RwSignal<Option<CareTeam>>,
    busy: RwSignal<bool>,
    command: &'static str,
    args: ChangeArgs,
) {
    busy.set(true);
    ui.error.set(None);
    spawn_local(async move {
        match call::<_, CareTeam>(command, &args).await {
            Ok(t) => team.set(Some(t)),
            Err(e) => ui.fail(&e),
        }
        busy.set(false);
    });
}

#[component]
pub(super) fn CareTeamPanel(patient_id: Uuid) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let team = RwSignal::new(None::<CareTeam>);
    let busy = RwSignal::new(false);
    let chosen = RwSignal::new(String::new());
    spawn_local(async move {
        let args = TeamArgs {
            patient_id: patient_id.to_string(),
        };
        match call::<_, CareTeam>("care_team", &args).await {
            Ok(t) => team.set(Some(t)),
            Err(e) => ui.fail(&e),
        }
    });
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        // The list's first entry is chosen until the user picks another.
        let first = team.with_untracked(|t| {
            t.as_ref()
                .and_then(|t| t.others.first())
                .map(|m| m.user_id.to_string())
        });
        let Some(clinician_id) = Some(chosen.get_untracked())
            .filter(|c| !c.is_empty())
            .or(first)
        else {
            return;
        };
        chosen.set(String::new());
        let args = ChangeArgs {
            patient_id: patient_id.to_string(),
            clinician_id,
        };
        change_team(ui, team, busy, "add_to_care_team", args);
    };
    let remove = move |clinician: Uuid| {
        let args = ChangeArgs {
            patient_id: patient_id.to_string(),
            clinician_id: clinician.to_string(),
        };
        change_team(ui, team, busy, "remove_from_care_team", args);
    };
    view! {
        <section id="care-team">
            <h2>"Care team"</h2>
            {move || match team.get() {
                None => view! { <p class="muted">"Loading the care team…"</p> }.into_any(),
                Some(t) => {
                    let members = if t.members.is_empty() {
                        view! {
                            <p class="muted" id="care-team-empty">
                                "No clinician yet: clinicians see this chart's clinical summary only by breaking the glass."
                            </p>
                        }
                        .into_any()
                    } else {
                        view! {
                            <ul class="plain" id="care-team-members">
                                {t.members.into_iter().map(|m| {
                                    let id = m.user_id;
                                    view! {
                                        <li class="care-team-member">
                                            <span>{m.display_name}</span>" "
                                            <button class="link remove-from-care-team" data-user-id=id.to_string()
                                                disabled=move || busy.get() on:click=move |_| remove(id)>
                                                "Remove"
                                            </button>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }
                        .into_any()
                    };
                    let form = (!t.others.is_empty()).then(|| view! {
                        <form class="review-form" id="care-team-add" on:submit=add>
                            <select id="care-team-clinician" on:change=move |ev| chosen.set(event_target_value(&ev))>
                                {t.others.into_iter().map(|m| view! {
                                    <option value=m.user_id.to_string()>{m.display_name}</option>
                                }).collect_view()}
                            </select>
                            <button type="submit" id="care-team-add-button" disabled=move || busy.get()>
                                "Add to the care team"
                            </button>
                        </form>
                    });
                    view! { {members}{form} }.into_any()
                }
            }}
        </section>
    }
}
