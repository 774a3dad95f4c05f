//! The practitioner directory: the old system's practitioners as the clinic's imports found
//! them (workforce data, not a patient's), each linked by the admin to the clinician's own
//! account. An import makes no sign-in; until an entry is linked, its appointments are
//! skipped, and importing the same files again brings them in.

use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::wire::{
    DirectoryEntry, PractitionerDirectory, RecordWritten, UserList, UserSummary,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::{NoArgs, call};
use crate::state::Ui;

#[derive(Serialize)]
struct LinkArgs {
    entry_id: String,
    version: u64,
    /// Empty: unlink.
    user_id: String,
}

/// The directory and the accounts an entry may stand for (active clinicians).
#[derive(Clone)]
struct Loaded {
    entries: Vec<DirectoryEntry>,
    clinicians: Vec<UserSummary>,
}

fn load(ui: Ui, loaded: RwSignal<Option<Loaded>>) {
    spawn_local(async move {
        let directory = call::<_, PractitionerDirectory>("practitioner_directory", &NoArgs {});
        let users = call::<_, UserList>("users", &NoArgs {});
        match (directory.await, users.await) {
            (Ok(d), Ok(u)) => loaded.set(Some(Loaded {
                entries: d.entries,
                clinicians: u
                    .users
                    .into_iter()
                    .filter(|u| u.active && u.role == Role::Clinician)
                    .collect(),
            })),
            (Err(e), _) | (_, Err(e)) => ui.fail(&e),
        }
    });
}

/// The directory, reloaded whenever `imports` counts another finished import.
#[component]
pub(super) fn DirectoryView(imports: ReadSignal<u32>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let loaded = RwSignal::new(None::<Loaded>);
    Effect::new(move |_| {
        imports.track();
        load(ui, loaded);
    });
    let save = move |entry: DirectoryEntry, user_id: String| {
        ui.error.set(None);
        spawn_local(async move {
            let args = LinkArgs {
                entry_id: entry.id.to_string(),
                version: entry.version,
                user_id,
            };
            if let Err(e) = call::<_, RecordWritten>("link_practitioner", &args).await {
                ui.fail(&e);
            }
            // Shown as stored now, whether the link went in or not.
            load(ui, loaded);
        });
    };
    view! {
        <div class="card wide" id="admin-directory">
            <h2>"Practitioners from the old system"</h2>
            <p class="lead">"An import puts the old system's practitioners here; it makes no sign-in. "
                "Link each to the clinician's own account (create it under Users first), then "
                "import the same files again: their appointments come in."</p>
            {move || match loaded.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(l) if l.entries.is_empty() => view! {
                    <p class="muted" id="directory-empty">"No practitioners imported yet."</p>
                }.into_any(),
                Some(l) => view! {
                    <table class="schedule" id="directory">
                        <thead><tr><th>"Name"</th><th>"NPI"</th><th>"Old system's id"</th>
                            <th>"Account"</th><th>"Status"</th><th></th></tr></thead>
                        <tbody>
                            {l.entries.into_iter().map(|entry| {
                                let options = l.clinicians.iter().map(|c| {
                                    let selected = entry.user_id == Some(c.user_id);
                                    view! {
                                        <option value=c.user_id.to_string() selected=selected>
                                            {c.display_name.clone()}
                                        </option>
                                    }
                                }).collect_view();
                                let linked = entry.user_id.is_some();
                                let stored = entry.user_id.map(|u| u.to_string()).unwrap_or_default();
                                let choice = RwSignal::new(stored.clone());
                                let unchanged = move || choice.with(|c| *c == stored);
                                let picker = format!("link-{}", entry.id);
                                let row = entry.clone();
                                view! {
                                    <tr class="directory-entry" class:linked=linked>
                                        <td>{entry.name.clone()}</td>
                                        <td>{entry.npi.clone()}</td>
                                        <td><code>{entry.source.clone()}</code></td>
                                        <td>
                                            <select id=picker aria-label=format!("Account for {}", entry.name)
                                                on:change=move |ev| choice.set(event_target_value(&ev))>
                                                <option value="" selected=!linked>"Not linked"</option>
                                                {options}
                                            </select>
                                        </td>
                                        <td class="muted">{if linked { "Linked" } else { "Not linked" }}</td>
                                        <td><button class="link-entry" disabled=unchanged
                                            on:click=move |_| save(row.clone(), choice.get_untracked())>"Save"</button></td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </div>
    }
}
