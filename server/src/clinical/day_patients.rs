//! A day's patients as billing works from them: who is booked that day in the clinic's time
//! zone (not cancelled or entered in error), each with their record and coverages cut to
//! the caller's field policy, and nothing of the appointment itself.

use std::collections::BTreeSet;

use clinicdesk_protocol::wire::{AppointmentStatus, DayPatient, DayPatients, UserInfo};
use uuid::Uuid;

use crate::clinical::{coverage, days, records};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;

/// Whether an appointment in this status puts its patient on the day's list: a visit that
/// was or will be (a no-show is billed too), not one that was called off or never was.
fn counts(status: Option<AppointmentStatus>) -> bool {
    !matches!(
        status,
        Some(AppointmentStatus::Cancelled | AppointmentStatus::EnteredInError)
    )
}

/// The patients booked on `date` (`YYYY-MM-DD`, the clinic's day; its today at `now_ms`
/// when absent), by family then given name, each once.
pub async fn day_patients(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    date: Option<&str>,
    now_ms: i64,
) -> Result<DayPatients, ServerError> {
    let day = days::requested_day(&state.store, scope, date, now_ms).await?;
    let booked: BTreeSet<Uuid> = state
        .store
        .appointments(scope, day.start_ms, day.end_ms)
        .await?
        .into_iter()
        .filter(|(a, _)| counts(a.status))
        .map(|(a, _)| a.patient_id)
        .collect();
    let mut patients = Vec::with_capacity(booked.len());
    for patient_id in booked {
        let record = records::record(state, scope, user, patient_id).await?;
        let coverages = coverage::list(&state.store, scope, user, patient_id)
            .await?
            .coverages;
        patients.push(DayPatient { record, coverages });
    }
    patients.sort_by(|a, b| {
        let name = |p: &DayPatient| {
            p.record
                .fields
                .name
                .as_ref()
                .map(|n| (n.family.to_lowercase(), n.given.to_lowercase()))
        };
        name(a).cmp(&name(b)).then(a.record.id.cmp(&b.record.id))
    });
    Ok(DayPatients {
        date: day.date.to_string(),
        time_zone: day.time_zone,
        patients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_called_off_visit_leaves_the_list_and_a_no_show_stays() {
        assert!(counts(Some(AppointmentStatus::Booked)));
        assert!(counts(Some(AppointmentStatus::Fulfilled)));
        assert!(counts(Some(AppointmentStatus::NoShow)));
        assert!(counts(None));
        assert!(!counts(Some(AppointmentStatus::Cancelled)));
        assert!(!counts(Some(AppointmentStatus::EnteredInError)));
    }
}
