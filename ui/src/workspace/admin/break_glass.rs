//! The admin's break-glass tab: every grant a clinician opened, newest first, with who,
//! which patient (by id: admins see no clinical content), why, when and how many audit
//! events were recorded under it; each waits until as many different admins as the clinic's
//! policy asks (two by default) acknowledge it with a note each. A grant the clinic lacks
//! admins to review (none may review their own, or one for an account they changed within
//! 30 days) is flagged.

use clinicdesk_protocol::wire::{BreakGlassQueue, BreakGlassReview, REVIEW_NOTE_MAX};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::call;
use crate::state::Ui;
use crate::time::local_date_time_ms;
use crate::widgets::ErrorLine;

#[derive(Serialize)]
struct QueueArgs {
    pending: bool,
}

#[derive(Serialize)]
struct ReviewArgs {
    grant_id: String,
    note: String,
}

fn load(ui: Ui, queue: RwSignal<Option<BreakGlassQueue>>, pending: bool) {
    spawn_local(async move {
        match call::<_, BreakGlassQueue>("break_glass_queue", &QueueArgs { pending }).await {
            Ok(q) => queue.set(Some(q)),
            Err(e) => ui.fail(&e),
        }
    });
}

#[component]
pub(super) fn BreakGlassView() -> impl IntoView {
    let ui = expect_context::<Ui>();
    ui.error.set(None);
    let queue = RwSignal::new(None::<BreakGlassQueue>);
    let pending_only = RwSignal::new(true);
    load(ui, queue, true);
    let show = move |pending: bool| {
        pending_only.set(pending);
        load(ui, queue, pending);
    };
    view! {
        <div class="card wide" id="admin-break-glass">
            <div class="title-row">
                <h1>"Break-glass reviews"</h1>
                <nav class="tabs">
                    <button id="break-glass-pending" class:active=move || pending_only.get()
                        on:click=move |_| show(true)>"Waiting for review"</button>
                    <button id="break-glass-all" class:active=move || !pending_only.get()
                        on:click=move |_| show(false)>"All"</button>
                </nav>
            </div>
            {move || match queue.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(q) if q.grants.is_empty() => view! {
                    <p class="muted" id="break-glass-empty">"No break-glass access waits for review."</p>
                }.into_any(),
                Some(q) => view! {
                    <table class="devices" id="break-glass-list">
                        <thead><tr>
                            <th>"Clinician"</th><th>"Patient id"</th><th>"Reason"</th>
                            <th>"Opened"</th><th>"Events"</th><th>"Review"</th>
                        </tr></thead>
                        <tbody>
                            {q.grants.into_iter().map(|g| view! {
                                <GrantRow g queue pending_only/>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
            <ErrorLine/>
        </div>
    }
}

#[component]
fn GrantRow(
    g: BreakGlassReview,
    queue: RwSignal<Option<BreakGlassQueue>>,
    pending_only: RwSignal<bool>,
) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let note = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let grant_id = g.grant.grant_id;
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if note.get_untracked().trim().is_empty() {
            ui.error
                .set(Some("Write what you checked before acknowledging.".into()));
            return;
        }
        busy.set(true);
        ui.error.set(None);
        let args = ReviewArgs {
            grant_id: grant_id.to_string(),
            note: note.get_untracked(),
        };
        spawn_local(async move {
            match call::<_, ()>("review_break_glass", &args).await {
                Ok(()) => load(ui, queue, pending_only.get_untracked()),
                Err(e) => ui.fail(&e),
            }
            busy.set(false);
        });
    };
    let reviewed = g.reviewed.is_some();
    let required = g.reviews_required;
    let done = g.reviews.len();
    let earlier = g
        .reviews
        .iter()
        .map(|r| {
            view! {
                <li class="review-done">{format!("Acknowledged {}: {}", local_date_time_ms(r.reviewed_at_ms), r.note.expose())}</li>
            }
        })
        .collect_view();
    let me = ui
        .status
        .get_untracked()
        .and_then(|s| s.user)
        .map(|u| u.user_id);
    // Each admin acknowledges a grant once: after theirs, the next is another admin's.
    let mine = g.reviews.iter().any(|r| Some(r.reviewed_by) == me);
    let standing = match (reviewed, mine) {
        (true, _) => None,
        (false, false) => Some(format!("{done} of {required} acknowledgements")),
        (false, true) => Some(format!(
            "{done} of {required} acknowledgements; yours is given, another admin gives the next"
        )),
    };
    let short = g.short_of_reviewers.then(|| view! {
        <p class="warn short-of-reviewers">
            "Not enough admins may review this: none reviews their own access, or one for an account they created or changed within 30 days. Add or ask another admin."
        </p>
    });
    let form = (!reviewed && !mine).then(|| view! {
        <form class="review-form" on:submit=submit>
            <label class="sr-only" for=format!("note-{grant_id}")>"What you checked"</label>
            <input class="review-note" id=format!("note-{grant_id}") placeholder="What you checked"
                maxlength=REVIEW_NOTE_MAX.to_string()
                prop:value=move || note.get() on:input=move |ev| note.set(event_target_value(&ev))/>
            <button type="submit" class="acknowledge" disabled=move || busy.get()>"Acknowledge"</button>
        </form>
    });
    let review = view! {
        <ul class="reviews">{earlier}</ul>
        {standing.map(|s| view! { <p class="muted review-standing">{s}</p> })}
        {short}
        {form}
    };
    view! {
        <tr class:reviewed=reviewed data-grant-id=grant_id.to_string()>
            <td>{g.display_name}<br/><span class="muted">{g.username}</span></td>
            <td class="patient-id"><code>{g.grant.patient_id.to_string()}</code></td>
            <td>{g.grant.reason_code.label()}<br/><span class="muted">{g.grant.reason_text.expose().clone()}</span></td>
            <td>{local_date_time_ms(g.grant.granted_at_ms)}</td>
            <td>{g.events_during}</td>
            <td>{review}</td>
        </tr>
    }
}
