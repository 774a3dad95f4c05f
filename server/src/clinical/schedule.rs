//! The clinic's schedule: today's appointments (UTC day).

use clinicdesk_protocol::wire::AppointmentList;

use crate::error::ServerError;
use crate::scope::ClinicScope;
use crate::store::Store;
use crate::time::rfc3339;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The clinic's appointments on the UTC day of `now_ms`, earliest first.
pub async fn today(
    store: &Store,
    scope: &ClinicScope,
    now_ms: i64,
) -> Result<AppointmentList, ServerError> {
    let day_start = now_ms - now_ms.rem_euclid(DAY_MS);
    let rows = store
        .appointments(scope, day_start, day_start + DAY_MS)
        .await?;
    let appointments = rows
        .into_iter()
        .map(|(mut a, starts_at_ms)| {
            a.starts_at = rfc3339(starts_at_ms)?;
            Ok(a)
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    let date = rfc3339(day_start)?.get(..10).unwrap_or_default().to_owned();
    Ok(AppointmentList { date, appointments })
}
