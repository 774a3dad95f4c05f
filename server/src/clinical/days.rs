//! A clinic's days: its IANA time zone, "today" in it, and the instants a local day runs
//! between (23 or 25 hours long on the days clocks change).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::error::ServerError;

/// A time zone known to the built-in tz database, by its IANA name; anything else is
/// refused by `field`'s name.
pub fn zone(name: &str, field: &'static str) -> Result<TimeZone, ServerError> {
    // Names are ASCII; a bound keeps lookups of junk cheap.
    if name.is_empty() || name.len() > 64 || !name.is_ascii() {
        return Err(ServerError::BadRequest { field });
    }
    TimeZone::get(name).map_err(|_| ServerError::BadRequest { field })
}

/// The zone a stored name names (UTC if the database holds a name this build lacks).
pub fn stored_zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

fn zoned(tz: &TimeZone, ms: i64) -> Result<Zoned, ServerError> {
    let at =
        Timestamp::from_millisecond(ms).map_err(|_| ServerError::Internal("time out of range"))?;
    Ok(at.to_zoned(tz.clone()))
}

/// The local date at `ms`.
pub fn local_date(tz: &TimeZone, ms: i64) -> Result<Date, ServerError> {
    Ok(zoned(tz, ms)?.date())
}

/// A `YYYY-MM-DD` date from a request, refused by `field`'s name.
pub fn parse_date(s: &str, field: &'static str) -> Result<Date, ServerError> {
    if s.len() != 10 {
        return Err(ServerError::BadRequest { field });
    }
    s.parse().map_err(|_| ServerError::BadRequest { field })
}

/// The local day `date` as `[start, end)` in UTC milliseconds: from its first instant to
/// the next day's (a day that skips or repeats an hour is 23 or 25 hours long).
pub fn day_bounds(tz: &TimeZone, date: Date) -> Result<(i64, i64), ServerError> {
    let out_of_range = |_| ServerError::BadRequest { field: "date" };
    let start = date.to_zoned(tz.clone()).map_err(out_of_range)?;
    let next = date.tomorrow().map_err(out_of_range)?;
    let end = next.to_zoned(tz.clone()).map_err(out_of_range)?;
    Ok((
        start.timestamp().as_millisecond(),
        end.timestamp().as_millisecond(),
    ))
}

/// RFC 3339 with the zone's offset at that instant, e.g. `2026-03-08T09:00:00-04:00`.
pub fn local_rfc3339(tz: &TimeZone, ms: i64) -> Result<String, ServerError> {
    Ok(zoned(tz, ms)?.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

/// The clinic's day a request asks for, and where it lies in time.
pub struct RequestedDay {
    /// The clinic's IANA time zone, by name.
    pub time_zone: String,
    pub tz: TimeZone,
    pub date: Date,
    /// The day's `[start_ms, end_ms)`, UTC milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The clinic's day `date` (`YYYY-MM-DD`), or its today at `now_ms`.
pub async fn requested_day(
    store: &crate::store::Store,
    scope: &crate::scope::ClinicScope,
    date: Option<&str>,
    now_ms: i64,
) -> Result<RequestedDay, ServerError> {
    let time_zone = store.clinic_time_zone(scope).await?;
    let tz = stored_zone(&time_zone);
    let date = match date {
        Some(d) => parse_date(d, "date")?,
        None => local_date(&tz, now_ms)?,
    };
    let (start_ms, end_ms) = day_bounds(&tz, date)?;
    Ok(RequestedDay {
        time_zone,
        tz,
        date,
        start_ms,
        end_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    const HOUR: i64 = 3_600_000;

    /// The spring-forward day is 23 hours long and the fall-back day 25, in New York and in
    /// Berlin (which change on other dates); an ordinary day is 24.
    #[test]
    fn days_are_as_long_as_the_clocks_make_them() {
        let ny = zone("America/New_York", "time_zone").unwrap();
        let berlin = zone("Europe/Berlin", "time_zone").unwrap();
        let length = |tz: &TimeZone, d: &str| {
            let (a, b) = day_bounds(tz, parse_date(d, "date").unwrap()).unwrap();
            (b - a) / HOUR
        };
        assert_eq!(length(&ny, "2026-03-08"), 23);
        assert_eq!(length(&ny, "2026-11-01"), 25);
        assert_eq!(length(&ny, "2026-07-01"), 24);
        assert_eq!(length(&berlin, "2026-03-29"), 23);
        assert_eq!(length(&berlin, "2026-10-25"), 25);
        let (start, _) = day_bounds(&ny, parse_date("2026-03-08", "date").unwrap()).unwrap();
        assert_eq!(start, ms("2026-03-08T05:00:00Z"));
    }

    #[test]
    fn times_carry_the_offset_of_their_moment() {
        let ny = zone("America/New_York", "time_zone").unwrap();
        assert_eq!(
            local_rfc3339(&ny, ms("2026-03-08T06:30:00Z")).unwrap(),
            "2026-03-08T01:30:00-05:00"
        );
        assert_eq!(
            local_rfc3339(&ny, ms("2026-03-08T07:30:00Z")).unwrap(),
            "2026-03-08T03:30:00-04:00"
        );
        // Late evening in New York is already tomorrow in UTC.
        let late = ms("2026-11-02T03:30:00Z");
        assert_eq!(local_date(&ny, late).unwrap().to_string(), "2026-11-01");
    }

    #[test]
    fn unknown_zones_and_dates_are_refused_by_field() {
        for bad in ["", "Mars/Olympus", "America/New York", "UTC;DROP", "Zürich"] {
            assert!(matches!(
                zone(bad, "time_zone"),
                Err(ServerError::BadRequest { field: "time_zone" })
            ));
        }
        for bad in ["2026-02-30", "2026-1-1", "tomorrow", "2026-01-01T00:00"] {
            assert!(parse_date(bad, "date").is_err(), "{bad}");
        }
    }
}
