//! The patients a workstation keeps offline for a window of the clinic's days, a page at a
//! time: who is booked from one day to another (in any status: the copy shows the days as
//! the schedule does; a clinician's own appointments only), by id after a cursor, each with
//! their chart, registration record and coverages cut to the caller's field policy and care
//! teams. One request per page instead of three per patient: the first sync of a front
//! desk's week is a few requests, not thousands.

use std::collections::BTreeSet;
use std::ops::Bound;

use clinicdesk_protocol::policy::Role;
use clinicdesk_protocol::policy::fields::{Resource, field_access};
use clinicdesk_protocol::wire::{
    PatientFields, SYNC_PAGE_MAX, SYNC_WINDOW_MAX_DAYS, SyncPage, SyncedPatient, UserInfo,
};
use jiff::civil::Date;
use uuid::Uuid;

use crate::clinical::{coverage, days, patients, records};
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;

/// The days a request without `from` and `to` gets: the window the app keeps, from
/// yesterday to a week ahead.
const DAYS_BEFORE: i64 = 1;
const DAYS_AFTER: i64 = 7;

/// What a page asks for, as the request named it (dates `YYYY-MM-DD`).
#[derive(Debug, Default)]
pub struct PageRequest<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub after: Option<Uuid>,
    pub limit: Option<usize>,
}

/// The window's first and last day: as asked, or the default around today.
fn window(request: &PageRequest<'_>, today: Date) -> Result<(Date, Date), ServerError> {
    let shift = |n: i64, field| {
        today
            .checked_add(jiff::Span::new().days(n))
            .map_err(|_| ServerError::BadRequest { field })
    };
    let from = match request.from {
        Some(d) => days::parse_date(d, "from")?,
        None => shift(-DAYS_BEFORE, "from")?,
    };
    let to = match request.to {
        Some(d) => days::parse_date(d, "to")?,
        None => shift(DAYS_AFTER, "to")?,
    };
    let span = (to - from).get_days();
    if span < 0 || i64::from(span) >= SYNC_WINDOW_MAX_DAYS {
        return Err(ServerError::BadRequest { field: "to" });
    }
    Ok((from, to))
}

/// Whether the role reads any registration field (whether a record is worth sending).
fn reads_registration(role: Role) -> bool {
    PatientFields::NAMES
        .iter()
        .any(|name| field_access(role, Resource::Patient, name).reads())
}

/// One page of the window's patients (see the module).
pub async fn page(
    state: &AppState,
    scope: &ClinicScope,
    user: &UserInfo,
    request: &PageRequest<'_>,
    now_ms: i64,
) -> Result<SyncPage, ServerError> {
    let limit = match request.limit {
        None => SYNC_PAGE_MAX,
        Some(n) if (1..=SYNC_PAGE_MAX).contains(&n) => n,
        Some(_) => return Err(ServerError::BadRequest { field: "limit" }),
    };
    let tz = days::stored_zone(&state.store.clinic_time_zone(scope).await?);
    let (from, to) = window(request, days::local_date(&tz, now_ms)?)?;
    let (start_ms, _) = days::day_bounds(&tz, from)?;
    let (_, end_ms) = days::day_bounds(&tz, to)?;
    let own_only = user.role == Role::Clinician;
    let booked: BTreeSet<Uuid> = state
        .store
        .appointments(scope, start_ms, end_ms)
        .await?
        .into_iter()
        .filter(|(a, _)| !own_only || a.practitioner_id == Some(user.user_id))
        .map(|(a, _)| a.patient_id)
        .collect();
    let after = request.after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut ids: Vec<Uuid> = booked
        .range((after, Bound::Unbounded))
        .take(limit + 1)
        .copied()
        .collect();
    let next = if ids.len() > limit {
        ids.truncate(limit);
        ids.last().copied()
    } else {
        None
    };
    let with_record = reads_registration(user.role);
    let with_coverage = field_access(user.role, Resource::Coverage, "payer").reads();
    // One transaction for the page: each patient's chart, record and coverages as one
    // moment of the database has them.
    let mut patients = Vec::with_capacity(ids.len());
    let mut tx = state.store.clinic_tx(scope).await?;
    for id in ids {
        // Booked but gone since (the appointments were read first): left out.
        let Some(chart) = patients::offline_chart(&mut tx, user, id, now_ms).await? else {
            continue;
        };
        let record = if with_record {
            Some(records::record_in(&mut tx, state, user, id).await?)
        } else {
            None
        };
        let coverages = if with_coverage {
            Some(coverage::list_in(&mut tx, user, id).await?.coverages)
        } else {
            None
        };
        patients.push(SyncedPatient {
            chart,
            record,
            coverages,
        });
    }
    tx.commit().await?;
    Ok(SyncPage { patients, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_window_runs_from_yesterday_to_a_week_ahead() {
        let (from, to) = window(&PageRequest::default(), date("2026-12-31")).unwrap();
        assert_eq!((from, to), (date("2026-12-30"), date("2027-01-07")));
    }

    #[test]
    fn a_window_backwards_or_longer_than_a_month_is_refused_on_to() {
        let ask = |from, to| PageRequest {
            from: Some(from),
            to: Some(to),
            ..PageRequest::default()
        };
        let today = date("2026-12-07");
        assert!(window(&ask("2026-12-07", "2026-12-07"), today).is_ok());
        assert!(window(&ask("2026-12-01", "2026-12-31"), today).is_ok());
        for (from, to) in [("2026-12-08", "2026-12-07"), ("2026-12-01", "2027-01-01")] {
            assert!(matches!(
                window(&ask(from, to), today),
                Err(ServerError::BadRequest { field: "to" })
            ));
        }
        assert!(matches!(
            window(&ask("07/12/2026", "2026-12-08"), today),
            Err(ServerError::BadRequest { field: "from" })
        ));
    }
}
