//! Breaking the glass: a clinician opens the chart of a patient outside their care team for
//! a limited time, with a reason. The server records it and an admin reviews it
//! (`admin::break_glass`).

use clinicdesk_protocol::wire::{
    BREAK_GLASS_MINUTES, BREAK_GLASS_TEXT_MAX, BreakGlassReason, Patient,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;

use crate::bridge::call;
use crate::state::Ui;

#[derive(Serialize)]
struct BreakGlassArgs {
    patient_id: String,
    reason_code: String,
    reason_text: String,
}

/// For a patient outside the clinician's care team: says why the clinical summary is not
/// shown and offers to break the glass, which needs a reason and the server.
#[component]
pub(super) fn BreakGlassPrompt(patient_id: uuid::Uuid) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let asking = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let code = RwSignal::new(BreakGlassReason::Emergency.as_str().to_owned());
    let text = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if text.get_untracked().trim().is_empty() {
            ui.error.set(Some("Say why you need this chart.".into()));
            return;
        }
        busy.set(true);
        ui.error.set(None);
        let args = BreakGlassArgs {
            patient_id: patient_id.to_string(),
            reason_code: code.get_untracked(),
            reason_text: text.get_untracked(),
        };
        spawn_local(async move {
            match call::<_, Patient>("break_glass", &args).await {
                Ok(p) => ui.patient.set(Some(p)),
                Err(e) => ui.fail(&e),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="notice" id="outside-care-team">
            <p>"This patient is not on your care team, so the clinical summary is not shown."</p>
            <Show when=move || !asking.get()>
                <button id="break-glass" class="danger" on:click=move |_| asking.set(true)>
                    "Break the glass…"
                </button>
            </Show>
            <Show when=move || asking.get()>
                <form id="break-glass-form" on:submit=submit>
                    <p>"Emergency access opens this chart to you for "{BREAK_GLASS_MINUTES}
                       " minutes. Every view is recorded with your reason, and your clinic's admin reviews it."</p>
                    <label>"Reason"
                        <select id="break-glass-reason" on:change=move |ev| code.set(event_target_value(&ev))>
                            {BreakGlassReason::ALL.into_iter().map(|r| view! {
                                <option value=r.as_str() selected=r == BreakGlassReason::Emergency>{r.label()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <label>"In your words"
                        <textarea id="break-glass-text" maxlength=BREAK_GLASS_TEXT_MAX.to_string() rows="3"
                            prop:value=move || text.get()
                            on:input=move |ev| text.set(event_target_value(&ev))></textarea>
                    </label>
                    <div class="actions">
                        <button type="submit" id="break-glass-confirm" class="danger" disabled=move || busy.get()>
                            "Open the chart"
                        </button>
                        <button type="button" class="link" on:click=move |_| asking.set(false)>"Cancel"</button>
                    </div>
                </form>
            </Show>
        </div>
    }
}
