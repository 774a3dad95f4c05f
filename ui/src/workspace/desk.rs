//! What the front desk's screens share: which pane shows (a day, a week, a form, the unsent
//! changes), the day and practitioner in view, who can be booked, and the line that says
//! what became of the last change. It lives in the workspace's context, so it goes with the
//! workspace when the session locks.

use clinicdesk_protocol::app::{ChangeState, ChangeSummary};
use clinicdesk_protocol::wire::StaffMember;
use clinicdesk_protocol::{ApiError, ErrorCode};
use leptos::prelude::*;
use uuid::Uuid;

use super::billing::DayList;
use crate::error_text::explain;

/// What fills the workspace (a chart, when one is open, goes over all of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pane {
    Day,
    Week,
    Register,
    Book,
    /// The user's changes the server does not have yet.
    Changes,
    /// The open chart's registration details, to edit.
    EditPatient(Uuid),
}

#[derive(Clone, Copy)]
pub(super) struct Desk {
    pub(super) pane: RwSignal<Pane>,
    /// The clinic's day in view (`YYYY-MM-DD`); `None` until the first schedule says
    /// which day today is there.
    pub(super) date: RwSignal<Option<String>>,
    /// Only this practitioner's appointments, or everyone's.
    pub(super) practitioner: RwSignal<Option<Uuid>>,
    pub(super) practitioners: RwSignal<Vec<StaffMember>>,
    /// What became of the last change (no PHI: it names no value).
    pub(super) notice: RwSignal<Option<String>>,
    /// The patient a booking is for, when chosen before the form opened (PHI: a name).
    pub(super) book_for: RwSignal<Option<(Uuid, String)>>,
    /// Billing's list of the day's patients with their coverage (PHI).
    pub(super) day_patients: RwSignal<DayList>,
}

impl Desk {
    pub(super) fn new() -> Self {
        Self {
            pane: RwSignal::new(Pane::Day),
            date: RwSignal::new(None),
            practitioner: RwSignal::new(None),
            practitioners: RwSignal::new(Vec::new()),
            notice: RwSignal::new(None),
            book_for: RwSignal::new(None),
            day_patients: RwSignal::new(DayList::Loading),
        }
    }

    /// The practitioner's name, for the schedule's "With" column.
    pub(super) fn practitioner_name(&self, id: Option<Uuid>) -> String {
        let Some(id) = id else {
            return String::new();
        };
        self.practitioners.with(|list| {
            list.iter()
                .find(|p| p.user_id == id)
                .map(|p| p.display_name.clone())
                .unwrap_or_default()
        })
    }

    /// Says what became of a change; answers whether the server has it or it waits here
    /// (the caller moves on), as opposed to needing the user.
    pub(super) fn tell(&self, change: &ChangeSummary, what: &str) -> bool {
        let (text, done) = match &change.state {
            ChangeState::Sent { .. } => (format!("{what}: saved."), true),
            ChangeState::Waiting => (
                format!(
                    "{what}: saved on this workstation. It is sent when the server can be reached."
                ),
                true,
            ),
            ChangeState::Refused { code, field } => {
                let e = ApiError {
                    field: field.clone(),
                    ..ApiError::new(*code)
                };
                (format!("{what}: not saved. {}", explain(&e)), false)
            }
            ChangeState::Conflict { .. } => (
                format!(
                    "{what}: someone changed this record meanwhile. Review it under Unsent changes."
                ),
                false,
            ),
            ChangeState::PossibleDuplicate { .. } => (
                format!("{what}: this may be a patient already registered."),
                false,
            ),
        };
        self.notice.set(Some(text));
        done
    }
}

/// The arguments of a command about one patient.
#[derive(serde::Serialize)]
pub(super) struct PatientArgs {
    pub(super) patient_id: String,
}

impl PatientArgs {
    pub(super) fn of(id: Uuid) -> Self {
        Self {
            patient_id: id.to_string(),
        }
    }
}

/// What a refused change's reason says, for the unsent changes list.
pub(super) fn refusal_text(code: ErrorCode, field: Option<&str>) -> String {
    explain(&ApiError {
        field: field.map(str::to_owned),
        ..ApiError::new(code)
    })
}

/// The notice line under the desk's toolbar.
#[component]
pub(super) fn Notice() -> impl IntoView {
    let desk = expect_context::<Desk>();
    view! {
        <Show when=move || desk.notice.get().is_some()>
            <div class="notice" id="desk-notice" role="status">
                {move || desk.notice.get().unwrap_or_default()}
                <button class="link dismiss" title="Dismiss" on:click=move |_| desk.notice.set(None)>"×"</button>
            </div>
        </Show>
    }
}
