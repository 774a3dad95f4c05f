//! The clinic's schedule: a day's appointments, the day and its times in the clinic's time
//! zone.

use clinicdesk_protocol::wire::AppointmentList;

use crate::clinical::days;
use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::Store;

/// The clinic's appointments on `date` (`YYYY-MM-DD`, its own day), or on its today at
/// `now_ms`, earliest first.
pub async fn day(
    store: &Store,
    scope: &ClinicScope,
    date: Option<&str>,
    now_ms: i64,
) -> Result<AppointmentList, ServerError> {
    let day = days::requested_day(store, scope, date, now_ms).await?;
    let rows = store.appointments(scope, day.start_ms, day.end_ms).await?;
    let appointments = rows
        .into_iter()
        .map(|(mut a, starts_at_ms)| {
            a.starts_at = days::local_rfc3339(&day.tz, starts_at_ms)?;
            Ok(a)
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    Ok(AppointmentList {
        date: day.date.to_string(),
        time_zone: day.time_zone,
        appointments,
    })
}
