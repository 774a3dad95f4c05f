//! The only place the app reads the clocks. The wall clock ([`Clock::now_ms`]) stamps audit
//! events and bounds offline use, and a person can set it back; idle time and how long a
//! sign-in may wait use the monotonic clock ([`Clock::monotonic`]), which no change of the
//! system time moves. The core takes a [`Clock`], so a test drives both with a
//! [`ManualClock`] instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> i64;
    /// A point on the monotonic clock: it only ever moves forward.
    fn monotonic(&self) -> Instant;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// RFC 3339 of a Unix-ms time, for display.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A clock that moves only when told to: for tests of offline limits, timestamps and idle
/// time. Advancing moves both clocks; rewinding moves the wall clock alone, as the
/// monotonic clock never goes back.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Manual>);

#[derive(Debug)]
struct Manual {
    wall_ms: AtomicI64,
    /// Where the monotonic clock started, and how far it has been advanced since.
    origin: Instant,
    advanced_ms: AtomicU64,
}

fn millis(by: Duration) -> u64 {
    u64::try_from(by.as_millis()).unwrap_or(u64::MAX)
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self(Arc::new(Manual {
            wall_ms: AtomicI64::new(start_ms),
            origin: Instant::now(),
            advanced_ms: AtomicU64::new(0),
        }))
    }

    pub fn advance(&self, by: Duration) {
        let ms = millis(by);
        self.0
            .wall_ms
            .fetch_add(i64::try_from(ms).unwrap_or(i64::MAX), Ordering::SeqCst);
        self.0.advanced_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// A sleep of `by`: the wall clock runs on, the monotonic clock (like Linux's
    /// `CLOCK_MONOTONIC` while suspended) does not.
    pub fn suspend(&self, by: Duration) {
        let ms = i64::try_from(millis(by)).unwrap_or(i64::MAX);
        self.0.wall_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock back, as a person changing the workstation's date would.
    pub fn rewind(&self, by: Duration) {
        let ms = i64::try_from(millis(by)).unwrap_or(i64::MAX);
        self.0.wall_ms.fetch_sub(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.wall_ms.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Instant {
        self.0.origin + Duration::from_millis(self.0.advanced_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_rewinds_the_wall_clock_but_never_the_monotonic_one() {
        let clock = ManualClock::new(1_000_000);
        let start = clock.monotonic();
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_ms(), 1_002_000);
        assert_eq!(clock.monotonic() - start, Duration::from_secs(2));
        clock.rewind(Duration::from_secs(5));
        assert_eq!(clock.now_ms(), 997_000);
        assert_eq!(clock.monotonic() - start, Duration::from_secs(2));
    }
}
