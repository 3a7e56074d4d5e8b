//! The service's time: Unix milliseconds for what is stored, a monotonic instant for what is
//! waited on (a paused environment, a throttled token slot), and RFC 3339 for what is shown.
//!
//! One [`Clock`] is shared by the worker, the Dataverse client and the routes. In production
//! it reads the system clock. Tests move it forward with [`Clock::advance`] instead of
//! sleeping (both readings move together, so a `Retry-After` pause and a scheduled retry
//! end at the same moment), or fix it with [`Clock::fixed`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The system clock, possibly moved forward (tests), or a fixed time (unit tests).
#[derive(Debug, Default)]
pub struct Clock {
    /// How far this clock runs ahead of the system's, in milliseconds (never negative).
    ahead_ms: AtomicI64,
    /// A fixed reading of [`Clock::now_ms`], for unit tests.
    fixed_ms: Option<i64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock whose [`Clock::now_ms`] is always `ms` (its instants still run).
    pub fn fixed(ms: i64) -> Self {
        Self {
            ahead_ms: AtomicI64::new(0),
            fixed_ms: Some(ms),
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self.fixed_ms {
            Some(ms) => ms.saturating_add(self.ahead()),
            None => now_ms().saturating_add(self.ahead()),
        }
    }

    /// Now, as a monotonic instant (for deadlines and pauses).
    pub fn instant(&self) -> Instant {
        crate::outbound::deadline_after(Instant::now(), Duration::from_millis(self.ahead() as u64))
    }

    /// Moves this clock forward by `by` (tests: time passes without sleeping).
    pub fn advance(&self, by: Duration) {
        let ms = millis(by);
        self.ahead_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| {
                Some(a.saturating_add(ms))
            })
            .ok();
    }

    fn ahead(&self) -> i64 {
        self.ahead_ms.load(Ordering::SeqCst).max(0)
    }
}

/// `d` in milliseconds, saturating at `i64::MAX` (for arithmetic on Unix-ms times).
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The system's time now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Unix milliseconds as RFC 3339 UTC with millisecond precision, e.g. `2026-11-20T10:01:02.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_both_readings_together() {
        let clock = Clock::system();
        let (ms, instant) = (clock.now_ms(), clock.instant());
        clock.advance(Duration::from_secs(60));
        assert!(clock.now_ms() - ms >= 60_000);
        assert!(clock.instant() - instant >= Duration::from_secs(60));
        clock.advance(Duration::MAX);
        assert!(clock.now_ms() > ms, "saturates instead of wrapping");

        let fixed = Clock::fixed(1_000);
        assert_eq!(fixed.now_ms(), 1_000);
        fixed.advance(Duration::from_millis(5));
        assert_eq!(fixed.now_ms(), 1_005);
    }

    #[test]
    fn rfc3339_has_milliseconds_and_survives_any_input() {
        assert_eq!(rfc3339(1_800_000_000_123), "2027-01-15T08:00:00.123Z");
        assert!(!rfc3339(i64::MAX).is_empty());
    }
}
