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
    fn midnight_is_zero_hundred() {
        assert_eq!(face(2026, 1, 1, 0, 0).time(), "00:00");
    }
}
