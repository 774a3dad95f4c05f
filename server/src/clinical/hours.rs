//! Practitioners' working hours and the free slots within them: the week each one can be
//! booked, in the clinic's local time, and on a given date the start times where an
//! appointment fits, every 15 minutes, holding no one else's time. Local times become
//! instants in the clinic's IANA zone, so a day the clocks change has an hour more or less
//! of slots, never a slot at a time that does not exist.

use clinicdesk_protocol::audit::{AuditAction, RequestSeen};
use clinicdesk_protocol::policy::{self, Permission};
use clinicdesk_protocol::wire::{
    FreeSlots, UserInfo, Weekday, WorkingHours, WorkingHoursChange, WorkingPeriod,
};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use uuid::Uuid;

use crate::audit::server_chain::{self, security_event};
use crate::clinical::days;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::state::AppState;
use crate::store::{ClinicTx, care_team, working_hours as stored};

const ROUTE: &str = "/v1/practitioners/{practitioner_id}/working-hours";
/// Slots start on the quarter hour.
const STEP_MINS: i64 = 15;
const MINUTE_MS: i64 = 60_000;
const MAX_PERIODS: usize = 28;

/// Monday to Friday, 09:00 to 17:00: the week of a practitioner whose hours nobody set.
fn default_week() -> Vec<WorkingPeriod> {
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
    ]
    .into_iter()
    .map(|weekday| WorkingPeriod {
        weekday,
        start: "09:00".into(),
        end: "17:00".into(),
    })
    .collect()
}

/// Minutes since midnight of `HH:MM` (`24:00` is the end of the day).
fn minutes(hhmm: &str) -> Option<i64> {
    let (h, m) = hhmm.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    ((0..24).contains(&h) && (0..60).contains(&m) || total == 24 * 60).then_some(total)
}

/// Refuses a week no one could work, by the field's name: a time that is not `HH:MM`, an
/// end not after its start, two periods of one day that overlap, too many periods.
fn validate(periods: &[WorkingPeriod]) -> Result<(), ServerError> {
    let bad = |field: &'static str| ServerError::BadRequest { field };
    if periods.len() > MAX_PERIODS {
        return Err(bad("periods"));
    }
    let mut spans = Vec::with_capacity(periods.len());
    for p in periods {
        let start = minutes(&p.start)
            .filter(|m| *m < 24 * 60)
            .ok_or(bad("start"))?;
        let end = minutes(&p.end).filter(|m| *m > start).ok_or(bad("end"))?;
        spans.push((p.weekday, start, end));
    }
    for (i, a) in spans.iter().enumerate() {
        if spans[i + 1..]
            .iter()
            .any(|b| a.0 == b.0 && a.1 < b.2 && b.1 < a.2)
        {
            return Err(bad("periods"));
        }
    }
    Ok(())
}

fn weekday_of(date: Date) -> Weekday {
    use jiff::civil::Weekday as W;
    match date.weekday() {
        W::Monday => Weekday::Mon,
        W::Tuesday => Weekday::Tue,
        W::Wednesday => Weekday::Wed,
        W::Thursday => Weekday::Thu,
        W::Friday => Weekday::Fri,
        W::Saturday => Weekday::Sat,
        W::Sunday => Weekday::Sun,
    }
}

/// A practitioner who may be booked: an active clinician of the clinic; anyone else is
/// not found.
async fn require_practitioner(tx: &mut ClinicTx, id: Uuid) -> Result<(), ServerError> {
    if care_team::is_active_clinician(tx, id).await? {
        Ok(())
    } else {
        Err(ServerError::NotFound)
    }
}

/// The practitioner's week: as set, or the default.
async fn week(tx: &mut ClinicTx, id: Uuid) -> Result<(Vec<WorkingPeriod>, bool), ServerError> {
    match stored::periods(tx, id).await? {
        Some(text) => serde_json::from_str(&text)
            .map(|p| (p, false))
            .map_err(|_| ServerError::Internal("stored working hours malformed")),
        None => Ok((default_week(), true)),
    }
}

/// The practitioner's week, for the front desk (any practitioner) or a clinician (their
/// own: another's answers like one that does not exist).
pub async fn working_hours(
    state: &AppState,
    scope: &ClinicScope,
    caller: &UserInfo,
    practitioner_id: Uuid,
) -> Result<WorkingHours, ServerError> {
    if !policy::allows(caller.role, Permission::ManageSchedule) && caller.user_id != practitioner_id
    {
        return Err(ServerError::NotFound);
    }
    let mut tx = state.store.clinic_tx(scope).await?;
    require_practitioner(&mut tx, practitioner_id).await?;
    let (periods, default) = week(&mut tx, practitioner_id).await?;
    tx.commit().await?;
    Ok(WorkingHours {
        practitioner_id,
        periods,
        default,
    })
}

/// Replaces the practitioner's week, with its `update` event of `Practitioner` (naming
/// `working_hours`) in the same transaction.
pub async fn set_working_hours(
    state: &AppState,
    scope: &ClinicScope,
    by: &UserInfo,
    practitioner_id: Uuid,
    change: WorkingHoursChange,
    seen: RequestSeen,
) -> Result<WorkingHours, ServerError> {
    validate(&change.periods)?;
    let text = serde_json::to_string(&change.periods)
        .map_err(|_| ServerError::Internal("working hours not encodable"))?;
    let mut tx = state.store.clinic_tx(scope).await?;
    require_practitioner(&mut tx, practitioner_id).await?;
    stored::set_periods(&mut tx, practitioner_id, &text, state.clock.now_ms()).await?;
    let mut event = security_event(
        by,
        AuditAction::Update,
        "Practitioner",
        practitioner_id.to_string(),
        ROUTE,
        seen,
    );
    event.fields = vec!["working_hours".to_owned()];
    server_chain::record_in(&mut tx, state, scope, vec![event]).await?;
    tx.commit().await?;
    Ok(WorkingHours {
        practitioner_id,
        periods: change.periods,
        default: false,
    })
}

/// The instant a local wall-clock time on `date` names (a time the clocks skip is the
/// instant they skip to; a repeated one, its first occurrence).
fn instant(tz: &TimeZone, date: Date, mins: i64) -> Result<i64, ServerError> {
    let out_of_range = |_| ServerError::BadRequest { field: "date" };
    let zoned = if mins >= 24 * 60 {
        date.tomorrow()
            .map_err(out_of_range)?
            .to_zoned(tz.clone())
            .map_err(out_of_range)?
    } else {
        let (h, m) = (i8::try_from(mins / 60), i8::try_from(mins % 60));
        let (Ok(h), Ok(m)) = (h, m) else {
            return Err(ServerError::Internal("working time out of range"));
        };
        let time = Time::new(h, m, 0, 0).map_err(out_of_range)?;
        date.to_datetime(time)
            .to_zoned(tz.clone())
            .map_err(out_of_range)?
    };
    Ok(zoned.timestamp().as_millisecond())
}

/// The start times on `date` (the clinic's today when absent) where `duration_mins`
/// (30 when absent) fits in the practitioner's hours, overlapping no appointment that holds
/// their time, and not already begun.
pub async fn free_slots(
    state: &AppState,
    scope: &ClinicScope,
    practitioner_id: Uuid,
    date: Option<&str>,
    duration_mins: Option<u32>,
) -> Result<FreeSlots, ServerError> {
    let duration = duration_mins.unwrap_or(30);
    if !(5..=480).contains(&duration) {
        return Err(ServerError::BadRequest {
            field: "duration_mins",
        });
    }
    let now = state.clock.now_ms();
    let tz = days::stored_zone(&state.store.clinic_time_zone(scope).await?);
    let date = match date {
        Some(d) => days::parse_date(d, "date")?,
        None => days::local_date(&tz, now)?,
    };
    let (day_start, day_end) = days::day_bounds(&tz, date)?;
    let mut tx = state.store.clinic_tx(scope).await?;
    require_practitioner(&mut tx, practitioner_id).await?;
    let (periods, _) = week(&mut tx, practitioner_id).await?;
    let held = stored::held(&mut tx, practitioner_id, day_start, day_end).await?;
    tx.commit().await?;

    let length = i64::from(duration) * MINUTE_MS;
    let weekday = weekday_of(date);
    let mut starts = Vec::new();
    for p in periods.iter().filter(|p| p.weekday == weekday) {
        let (Some(from), Some(to)) = (minutes(&p.start), minutes(&p.end)) else {
            continue;
        };
        let (from, to) = (instant(&tz, date, from)?, instant(&tz, date, to)?);
        let mut at = from;
        while at + length <= to {
            let free = !held.iter().any(|(s, e)| *s < at + length && at < *e);
            if free && at >= now {
                starts.push(at);
            }
            at += STEP_MINS * MINUTE_MS;
        }
    }
    starts.sort_unstable();
    starts.dedup();
    Ok(FreeSlots {
        practitioner_id,
        date: date.to_string(),
        duration_mins: duration,
        slots: starts
            .into_iter()
            .map(|ms| days::local_rfc3339(&tz, ms))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(weekday: Weekday, start: &str, end: &str) -> WorkingPeriod {
        WorkingPeriod {
            weekday,
            start: start.into(),
            end: end.into(),
        }
    }

    #[test]
    fn a_week_no_one_could_work_is_refused_by_field() {
        let field = |p: Vec<WorkingPeriod>| validate(&p).err().and_then(|e| e.field());
        assert_eq!(field(default_week()), None);
        assert_eq!(field(vec![period(Weekday::Mon, "00:00", "24:00")]), None);
        assert_eq!(
            field(vec![period(Weekday::Mon, "9:00", "17:00")]),
            Some("start")
        );
        assert_eq!(
            field(vec![period(Weekday::Mon, "24:00", "24:00")]),
            Some("start")
        );
        assert_eq!(
            field(vec![period(Weekday::Mon, "09:00", "09:00")]),
            Some("end")
        );
        assert_eq!(
            field(vec![period(Weekday::Mon, "09:00", "25:00")]),
            Some("end")
        );
        assert_eq!(
            field(vec![period(Weekday::Mon, "09:60", "10:00")]),
            Some("start")
        );
        assert_eq!(
            field(vec![
                period(Weekday::Mon, "09:00", "12:00"),
                period(Weekday::Mon, "11:30", "13:00"),
            ]),
            Some("periods")
        );
        assert_eq!(
            field(vec![
                period(Weekday::Mon, "09:00", "12:00"),
                period(Weekday::Tue, "11:30", "13:00"),
                period(Weekday::Mon, "12:00", "13:00"),
            ]),
            None
        );
        assert_eq!(
            field(vec![
                period(Weekday::Sat, "09:00", "10:00");
                MAX_PERIODS + 1
            ]),
            Some("periods")
        );
    }
}
