//! The page's state, handed to every component through Leptos context: the core's last
//! status, the error line, and the PHI the workspace shows. PHI lives here only while the
//! phase is `Unlocked`; any other phase drops it.

use clinicdesk_protocol::app::{AppStatus, Phase};
use clinicdesk_protocol::policy::{self, Permission};
use clinicdesk_protocol::wire::{AppointmentList, Patient};
use clinicdesk_protocol::{ApiError, ErrorCode};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::bridge::{NoArgs, call};
use crate::error_text::explain;

#[derive(Clone, Copy)]
pub(crate) struct Ui {
    pub(crate) status: RwSignal<Option<AppStatus>>,
    /// Bumped whenever the page asks the core to change phase; a status poll that was in
    /// flight across a bump is stale and dropped, so it cannot undo the change.
    epoch: StoredValue<u64>,
    /// The day's appointments in view (PHI).
    pub(crate) schedule: RwSignal<Option<AppointmentList>>,
    /// The open chart (PHI); while there is one it replaces the schedule.
    pub(crate) patient: RwSignal<Option<Patient>>,
    pub(crate) error: RwSignal<Option<String>>,
    /// Recovery codes from a first second factor, until the user confirms saving them.
    pub(crate) recovery_codes: RwSignal<Option<Vec<String>>>,
    /// The signed-in user is changing their password (the form replaces the workspace).
    pub(crate) changing_password: RwSignal<bool>,
    /// The status bar asked the workspace to show the unsent changes.
    pub(crate) show_changes: RwSignal<bool>,
}

impl Ui {
    /// Nothing known yet: the first status poll fills it in.
    pub(crate) fn new() -> Self {
        Self {
            status: RwSignal::new(None),
            epoch: StoredValue::new(0),
            schedule: RwSignal::new(None),
            patient: RwSignal::new(None),
            error: RwSignal::new(None),
            recovery_codes: RwSignal::new(None),
            changing_password: RwSignal::new(false),
            show_changes: RwSignal::new(false),
        }
    }

    /// Drops every PHI value the page holds.
    pub(crate) fn forget_phi(&self) {
        self.schedule.set(None);
        self.patient.set(None);
    }

    pub(crate) fn apply_status(&self, status: AppStatus) {
        if status.phase != Phase::Unlocked {
            self.forget_phi();
            // Secrets do not stay on a locked screen.
            self.recovery_codes.set(None);
            self.changing_password.set(false);
        }
        self.status.set(Some(status));
    }

    pub(crate) fn refresh(self) {
        let asked_at = self.epoch.get_value();
        spawn_local(async move {
            if let Ok(status) = call::<_, AppStatus>("status", &NoArgs {}).await
                && self.epoch.get_value() == asked_at
            {
                self.apply_status(status);
            }
        });
    }

    /// Marks the start of a phase-changing command.
    pub(crate) fn begin_change(&self) {
        self.epoch.update_value(|e| *e += 1);
    }

    /// Shows why a command was refused; a refusal because the core locked meanwhile also
    /// brings the lock screen.
    pub(crate) fn fail(&self, e: &ApiError) {
        self.error.set(Some(explain(e)));
        if e.code == ErrorCode::Locked {
            self.refresh();
        }
    }

    /// The signed-in user's role allows `permission` (no user: no).
    pub(crate) fn user_may(&self, permission: Permission) -> bool {
        self.status.with_untracked(|s| {
            s.as_ref()
                .and_then(|s| s.user.as_ref())
                .is_some_and(|u| policy::allows(u.role, permission))
        })
    }
}
