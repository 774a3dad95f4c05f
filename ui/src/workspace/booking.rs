//! Booking an appointment: the patient (found as the desk types, or the one just
//! registered), the practitioner, the day, how long, and a free slot of the practitioner's
//! working hours; offline, where free slots cannot be asked, the desk types the time and
//! the server checks it when the booking is sent.

use clinicdesk_protocol::Phi;
use clinicdesk_protocol::app::ChangeSummary;
use clinicdesk_protocol::wire::FreeSlots;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::Serialize;
use uuid::Uuid;

use super::desk::{Desk, Pane};
use super::finder::PatientFinder;
use super::schedule::load_day;
use crate::bridge::call;
use crate::state::Ui;
use crate::time::clinic_time;
use crate::widgets::ErrorLine;

#[derive(Serialize)]
struct Booking {
    patient_id: Uuid,
    practitioner_id: Uuid,
    date: String,
    time: String,
    duration_mins: u32,
    appointment_type: String,
    reason: Phi<String>,
}

#[derive(Serialize)]
struct BookArgs {
    booking: Booking,
}

#[derive(Serialize)]
struct SlotArgs {
    practitioner_id: String,
    date: String,
    duration_mins: u32,
}

/// FHIR's appointment types (v2 0276), as the desk says them.
const TYPES: [(&str, &str); 5] = [
    ("routine", "Routine"),
    ("followup", "Follow-up"),
    ("checkup", "Check-up"),
    ("walkin", "Walk-in"),
    ("emergency", "Emergency"),
];

#[component]
pub(super) fn BookingForm() -> impl IntoView {
    let ui = expect_context::<Ui>();
    let desk = expect_context::<Desk>();
    let practitioner = RwSignal::new(desk.practitioner.get_untracked().or_else(|| {
        desk.practitioners
            .with_untracked(|p| p.first().map(|p| p.user_id))
    }));
    let date = RwSignal::new(desk.date.get_untracked().unwrap_or_default());
    let duration = RwSignal::new(20u32);
    let kind = RwSignal::new("routine".to_owned());
    let time = RwSignal::new(String::new());
    let reason = RwSignal::new(String::new());
    let slots = RwSignal::new(None::<Vec<String>>);
    let busy = RwSignal::new(false);
    let online = move || {
        ui.status
            .get()
            .is_some_and(|s| s.online == Some(true) && !s.offline_session)
    };
    // Free slots follow the practitioner, day and length (online only).
    Effect::new(move |_| {
        let (Some(p), d, mins) = (practitioner.get(), date.get(), duration.get()) else {
            return;
        };
        if d.is_empty() || !online() {
            slots.set(None);
            return;
        }
        let args = SlotArgs {
            practitioner_id: p.to_string(),
            date: d,
            duration_mins: mins,
        };
        spawn_local(async move {
            match call::<_, FreeSlots>("free_slots", &args).await {
                Ok(free) => {
                    let times: Vec<String> = free.slots.iter().map(|s| clinic_time(s)).collect();
                    time.set(times.first().cloned().unwrap_or_default());
                    slots.set(Some(times));
                }
                Err(_) => slots.set(None),
            }
        });
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        ui.error.set(None);
        let (Some((patient_id, _)), Some(practitioner_id)) =
            (desk.book_for.get_untracked(), practitioner.get_untracked())
        else {
            desk.notice.set(Some(
                "Choose the patient and the practitioner first.".into(),
            ));
            return;
        };
        let args = BookArgs {
            booking: Booking {
                patient_id,
                practitioner_id,
                date: date.get_untracked(),
                time: time.get_untracked(),
                duration_mins: duration.get_untracked(),
                appointment_type: kind.get_untracked(),
                reason: Phi::new(reason.get_untracked().trim().to_owned()),
            },
        };
        let day = args.booking.date.clone();
        busy.set(true);
        spawn_local(async move {
            match call::<_, ChangeSummary>("book", &args).await {
                Ok(change) => {
                    if desk.tell(&change, "Booking") {
                        desk.book_for.set(None);
                        desk.pane.set(Pane::Day);
                        load_day(ui, desk, Some(day));
                    }
                }
                Err(e) => ui.fail(&e),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="stack wide">
        <div class="card" id="booking">
            <button class="link" id="booking-back" on:click=move |_| desk.pane.set(Pane::Day)>"← Schedule"</button>
            <h1>"Book an appointment"</h1>
            {move || match desk.book_for.get() {
                Some((_, name)) => view! {
                    <p class="chosen">"For "<strong id="booking-patient">{name}</strong>" "
                        <button class="link" id="booking-change-patient" on:click=move |_| desk.book_for.set(None)>"(someone else)"</button></p>
                }.into_any(),
                None => view! {
                    <p class="muted">"First find the patient, then choose them."</p>
                    <PatientFinder pick=move |id, name| desk.book_for.set(Some((id, name))) action="Book for this patient"/>
                }.into_any(),
            }}
            <form class="grid-form" id="booking-form" on:submit=submit>
                <label for="booking-practitioner">"With"</label>
                <select id="booking-practitioner"
                    on:change=move |ev| practitioner.set(event_target_value(&ev).parse().ok())>
                    {move || desk.practitioners.get().into_iter().map(|p| {
                        let selected = practitioner.get_untracked() == Some(p.user_id);
                        view! { <option value=p.user_id.to_string() selected=selected>{p.display_name}</option> }
                    }).collect_view()}
                </select>
                <label for="booking-date">"Day"</label>
                <input id="booking-date" required placeholder="YYYY-MM-DD" autocomplete="off" prop:value=move || date.get()
                    on:input=move |ev| date.set(event_target_value(&ev))/>
                <label for="booking-duration">"Length"</label>
                <select id="booking-duration" on:change=move |ev| {
                    if let Ok(m) = event_target_value(&ev).parse() { duration.set(m) }
                }>
                    {[10u32, 15, 20, 30, 45, 60].into_iter().map(|m| view! {
                        <option value=m.to_string() selected=m == 20>{format!("{m} minutes")}</option>
                    }).collect_view()}
                </select>
                <label for="booking-time">"Time"</label>
                {move || match slots.get() {
                    Some(times) if times.is_empty() => view! {
                        <p class="muted" id="booking-no-slots">"No free time that day. Try another day or practitioner."</p>
                    }.into_any(),
                    Some(times) => view! {
                        <select id="booking-time" on:change=move |ev| time.set(event_target_value(&ev))>
                            {times.into_iter().map(|t| view! { <option value=t.clone()>{t.clone()}</option> }).collect_view()}
                        </select>
                    }.into_any(),
                    None => view! {
                        <input id="booking-time" required placeholder="HH:MM" autocomplete="off" prop:value=move || time.get()
                            on:input=move |ev| time.set(event_target_value(&ev))/>
                    }.into_any(),
                }}
                <Show when=move || !online()>
                    <p class="hint offline-note">"Offline: free times cannot be checked now. The server checks this time when the booking is sent."</p>
                </Show>
                <label for="booking-type">"Type"</label>
                <select id="booking-type" on:change=move |ev| kind.set(event_target_value(&ev))>
                    {TYPES.into_iter().map(|(code, label)| view! { <option value=code>{label}</option> }).collect_view()}
                </select>
                <label for="booking-reason">"Reason"</label>
                <input id="booking-reason" autocomplete="off" prop:value=move || reason.get()
                    on:input=move |ev| reason.set(event_target_value(&ev))/>
                <button type="submit" id="booking-submit" disabled=move || busy.get()>"Book"</button>
            </form>
            <ErrorLine/>
        </div>
        </div>
    }
}
