//! Times as the workstation's clock shows them. The core and the server speak UTC (RFC 3339
//! text or milliseconds since 1970); the person at the desk reads local time, so the
//! browser's `Date` does the time-zone arithmetic and this module only lays out the digits.

use wasm_bindgen::JsValue;

/// `HH:MM` in the workstation's time zone.
pub(crate) fn local_time(rfc3339: &str) -> String {
    ClockFace::from_rfc3339(rfc3339).time()
}

/// `YYYY-MM-DD HH:MM` in the workstation's time zone.
pub(crate) fn local_date_time(rfc3339: &str) -> String {
    ClockFace::from_rfc3339(rfc3339).date_and_time()
}

/// `HH:MM` in the workstation's time zone, from UTC milliseconds.
pub(crate) fn local_time_ms(ms: i64) -> String {
    ClockFace::from_ms(ms).time()
}

/// `YYYY-MM-DD HH:MM` in the workstation's time zone, from UTC milliseconds.
pub(crate) fn local_date_time_ms(ms: i64) -> String {
    ClockFace::from_ms(ms).date_and_time()
}

/// The clinic-local `HH:MM` of an RFC 3339 time the server wrote with the clinic's offset
/// (`2026-03-08T09:00:00-04:00`): its own digits, whatever the workstation's zone.
pub(crate) fn clinic_time(rfc3339: &str) -> String {
    rfc3339.get(11..16).unwrap_or_default().to_owned()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parse_date(date: &str) -> Option<(i64, i64, i64)> {
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// `YYYY-MM-DD` `n` days after (or before) `date`; `date` itself if it is not one.
pub(crate) fn add_days(date: &str, n: i64) -> String {
    let Some((y, m, d)) = parse_date(date) else {
        return date.to_owned();
    };
    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) + n);
    format!("{y:04}-{m:02}-{d:02}")
}

/// "Mon 7 Dec 2026" for a `YYYY-MM-DD` date.
pub(crate) fn day_label(date: &str) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let Some((y, m, d)) = parse_date(date) else {
        return date.to_owned();
    };
    let weekday = DAYS[usize::try_from(days_from_civil(y, m, d).rem_euclid(7)).unwrap_or(0)];
    let month = MONTHS[usize::try_from(m - 1).unwrap_or(0).min(11)];
    format!("{weekday} {d} {month} {y}")
}

/// A moment as the workstation's clock reads it, months counted from 1. Kept apart from
/// `js_sys::Date` so that the layout is plain Rust.
struct ClockFace {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

impl ClockFace {
    fn of(date: &js_sys::Date) -> Self {
        Self {
            year: date.get_full_year(),
            // JavaScript counts months from 0.
            month: date.get_month() + 1,
            day: date.get_date(),
            hour: date.get_hours(),
            minute: date.get_minutes(),
        }
    }

    fn from_rfc3339(text: &str) -> Self {
        Self::of(&js_sys::Date::new(&JsValue::from_str(text)))
    }

    fn from_ms(ms: i64) -> Self {
        // Milliseconds since 1970 fit an f64 exactly for the next 285,000 years.
        #[allow(clippy::cast_precision_loss)]
        let ms = ms as f64;
        Self::of(&js_sys::Date::new(&JsValue::from_f64(ms)))
    }

    /// `HH:MM`.
    fn time(&self) -> String {
        format!("{:02}:{:02}", self.hour, self.minute)
    }

    /// `YYYY-MM-DD HH:MM`.
    fn date_and_time(&self) -> String {
        format!(
            "{}-{:02}-{:02} {}",
            self.year,
            self.month,
            self.day,
            self.time()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ClockFace;

    fn face(year: u32, month: u32, day: u32, hour: u32, minute: u32) -> ClockFace {
        ClockFace {
            year,
            month,
            day,
            hour,
            minute,
        }
    }

    #[test]
    fn single_digits_get_a_leading_zero() {
        let morning = face(2025, 3, 7, 9, 5);
        assert_eq!(morning.time(), "09:05");
        assert_eq!(morning.date_and_time(), "2025-03-07 09:05");
    }

    #[test]
    fn two_digits_stay_as_they_are() {
        let last_minute = face(2024, 12, 31, 23, 59);
        assert_eq!(last_minute.date_and_time(), "2024-12-31 23:59");
    }

    #[test]
    fn days_move_across_months_years_and_leap_days() {
        assert_eq!(super::add_days("2026-12-31", 1), "2027-01-01");
        assert_eq!(super::add_days("2028-02-28", 1), "2028-02-29");
        assert_eq!(super::add_days("2026-03-01", -1), "2026-02-28");
        assert_eq!(super::add_days("2026-12-07", 7), "2026-12-14");
        assert_eq!(super::add_days("not a date", 1), "not a date");
    }

    #[test]
    fn days_are_labelled_with_their_weekday() {
        assert_eq!(super::day_label("2026-12-07"), "Mon 7 Dec 2026");
        assert_eq!(super::day_label("1970-01-01"), "Thu 1 Jan 1970");
        assert_eq!(super::day_label("2028-02-29"), "Tue 29 Feb 2028");
    }

    #[test]
    fn the_clinic_time_is_the_servers_digits() {
        assert_eq!(super::clinic_time("2026-03-08T09:00:00-04:00"), "09:00");
        assert_eq!(super::clinic_time(""), "");
    }

    #[test]
    fn midnight_is_zero_hundred() {
        assert_eq!(face(2026, 1, 1, 0, 0).time(), "00:00");
    }
}
