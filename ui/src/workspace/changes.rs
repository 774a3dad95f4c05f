//! The user's changes the server does not have yet: waiting ones (sent when the server can
//! be reached), and those that need the user: refused (with the reason; discard when read),
//! in conflict (the user's value and the server's, field by field: the user picks), or a
//! possible duplicate registration ("Is this the same person?").

use clinicdesk_protocol::app::{
    ChangeKind, ChangeState, ChangeSummary, FieldConflict, UnsentChanges,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use super::desk::{Desk, Pane, refusal_text};
use super::register::{ChangeIdArgs, SamePerson};
use crate::bridge::{NoArgs, call};
use crate::state::Ui;
use crate::time::local_date_time;
use crate::widgets::ErrorLine;

#[derive(Serialize)]
struct ResolveArgs {
    change_id: String,
    keep_mine: Vec<String>,
}

fn kind_label(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::RegisterPatient => "New patient",
        ChangeKind::UpdatePatient => "Patient details",
        ChangeKind::Book => "Booking",
        ChangeKind::ChangeAppointment => "Appointment change",
        ChangeKind::AddCoverage => "New coverage",
        ChangeKind::UpdateCoverage => "Coverage correction",
    }
}

fn load(ui: Ui, list: RwSignal<Option<Vec<ChangeSummary>>>) {
    spawn_local(async move {
        match call::<_, UnsentChanges>("unsent_changes", &NoArgs {}).await {
            Ok(unsent) => list.set(Some(unsent.changes)),
            Err(e) => ui.fail(&e),
        }
    });
}

#[component]
pub(super) fn ChangesPane() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let list = RwSignal::new(None::<Vec<ChangeSummary>>);
    let reviewing = RwSignal::new(None::<ChangeSummary>);
    load(ui, list);
    let discard = move |change_id: uuid::Uuid| {
        spawn_local(async move {
            let args = ChangeIdArgs {
                change_id: change_id.to_string(),
            };
            match call::<_, UnsentChanges>("discard_change", &args).await {
                Ok(unsent) => list.set(Some(unsent.changes)),
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <div class="card wide" id="unsent-changes">
            <button class="link" id="changes-back" on:click=move |_| desk.pane.set(Pane::Day)>"← Schedule"</button>
            <h1>"Unsent changes"</h1>
            <p class="lead">"Changes made on this workstation that the server does not have yet. Waiting ones are sent as soon as it can be reached; the others need you."</p>
            {move || match reviewing.get() {
                Some(change) if matches!(change.state, ChangeState::PossibleDuplicate { .. }) => {
                    view! { <SamePerson change/> }.into_any()
                }
                Some(change) => view! { <ConflictReview change done=move || { reviewing.set(None); load(ui, list) }/> }.into_any(),
                None => match list.get() {
                    None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                    Some(changes) if changes.is_empty() => view! {
                        <p class="muted" id="no-unsent-changes">"Nothing waiting: the server has every change made here."</p>
                    }.into_any(),
                    Some(changes) => view! {
                        <table class="schedule" id="unsent-list">
                            <thead><tr><th>"Change"</th><th>"Fields"</th><th>"Made"</th><th>"Where it stands"</th><th></th></tr></thead>
                            <tbody>
                                {changes.into_iter().map(|c| {
                                    let id = c.change_id;
                                    let review = c.clone();
                                    let (standing, action) = match &c.state {
                                        ChangeState::Waiting | ChangeState::Sent { .. } => ("Waiting to be sent".to_owned(), None),
                                        ChangeState::Refused { code, field } => (
                                            format!("Refused: {}", refusal_text(*code, field.as_deref())),
                                            Some(view! { <button class="small danger discard-change" on:click=move |_| discard(id)>"Discard"</button> }.into_any()),
                                        ),
                                        ChangeState::Conflict { .. } => (
                                            "Changed by someone else meanwhile".to_owned(),
                                            Some(view! { <button class="small review-change" on:click=move |_| reviewing.set(Some(review.clone()))>"Review"</button> }.into_any()),
                                        ),
                                        ChangeState::PossibleDuplicate { .. } => (
                                            "May already be registered".to_owned(),
                                            Some(view! { <button class="small review-change" on:click=move |_| reviewing.set(Some(review.clone()))>"Review"</button> }.into_any()),
                                        ),
                                    };
                                    view! {
                                        <tr class="unsent-change" data-change-id=id.to_string()>
                                            <td>{kind_label(c.kind)}</td>
                                            <td>{c.fields.join(", ").replace('_', " ")}</td>
                                            <td>{local_date_time(&c.made_at)}</td>
                                            <td>{standing}</td>
                                            <td>{action}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                },
            }}
            <ErrorLine/>
        </div>
    }
}

/// A change in conflict, field by field: what the user typed and what the server holds
/// now. Each field the user ticks is sent again on the server's version; the others keep
/// the server's value. Ticking none discards the change.
#[component]
fn ConflictReview(
    change: ChangeSummary,
    done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let fields = RwSignal::new(None::<Vec<FieldConflict>>);
    let keep = RwSignal::new(Vec::<String>::new());
    let change_id = change.change_id;
    spawn_local(async move {
        let args = ChangeIdArgs {
            change_id: change_id.to_string(),
        };
        match call::<_, Vec<FieldConflict>>("conflict_detail", &args).await {
            Ok(list) => {
                keep.set(list.iter().map(|f| f.field.clone()).collect());
                fields.set(Some(list));
            }
            Err(e) => ui.fail(&e),
        }
    });
    let settle = move |_| {
        let keep_mine = keep.get_untracked();
        spawn_local(async move {
            let id = change_id.to_string();
            if keep_mine.is_empty() {
                match call::<_, UnsentChanges>("discard_change", &ChangeIdArgs { change_id: id })
                    .await
                {
                    Ok(_) => {
                        desk.notice.set(Some(
                            "Your change was dropped: the server's values stay.".into(),
                        ));
                        done();
                    }
                    Err(e) => ui.fail(&e),
                }
                return;
            }
            match call::<_, ChangeSummary>(
                "resolve_conflict",
                &ResolveArgs {
                    change_id: id,
                    keep_mine,
                },
            )
            .await
            {
                Ok(change) => {
                    desk.tell(&change, "Your choice");
                    done();
                }
                Err(e) => ui.fail(&e),
            }
        });
    };
    view! {
        <div class="notice warning" id="conflict-review" role="alertdialog" aria-labelledby="conflict-title">
            <h2 id="conflict-title">"Someone changed this record after you"</h2>
            <p>"For each field, keep your value (ticked) or theirs (unticked). Both versions stay in the record's history."</p>
            {move || fields.get().map(|list| view! {
                <table class="schedule" id="conflict-fields">
                    <thead><tr><th>"Field"</th><th>"Yours"</th><th>"Now on the server"</th><th>"Keep yours"</th></tr></thead>
                    <tbody>
                        {list.into_iter().map(|f| {
                            let name = f.field.clone();
                            let toggled = name.clone();
                            let checkbox_id = format!("keep-{name}");
                            view! {
                                <tr class="conflict-field" data-field=name.clone()>
                                    <td>{name.replace('_', " ")}</td>
                                    <td class="mine">{f.mine}</td>
                                    <td class="theirs">{f.theirs}</td>
                                    <td>
                                        <label class="sr-only" for=checkbox_id.clone()>{format!("Keep your {}", name.replace('_', " "))}</label>
                                        <input type="checkbox" class="keep-mine" id=checkbox_id
                                            prop:checked=move || keep.with(|k| k.contains(&toggled))
                                            on:change={
                                                let name = name.clone();
                                                move |ev| {
                                                    let on = event_target_checked(&ev);
                                                    keep.update(|k| {
                                                        k.retain(|n| *n != name);
                                                        if on { k.push(name.clone()) }
                                                    });
                                                }
                                            }/>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            <div class="actions">
                <button id="conflict-settle" on:click=settle>"Save my choices"</button>
                <button class="outline" on:click=move |_| done()>"Later"</button>
            </div>
        </div>
    }
}
