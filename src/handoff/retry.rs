//! The retry policy: when to try again after a transient failure.
//!
//! Which failures are transient is decided where they are defined
//! (`dynamics::failure::RetryClass`): no answer (connect error, timeout, reset), HTTP 5xx and
//! 408, HTTP 429, and Entra ID throttling or unavailability. A `Retry-After` (seconds) is
//! honored as sent, clamped to one hour; otherwise the delay is exponential backoff with full
//! jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): uniform in
//! `[0, min(cap, base · 2^(n-1))]`. A handoff that keeps failing transiently past
//! `give_up_after` fails with `retries_exhausted`.

use std::time::Duration;

use rand::Rng;

use crate::outbound::MAX_RETRY_AFTER;

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Upper bound of the first retry's delay.
    pub base: Duration,
    /// Largest delay between two attempts.
    pub cap: Duration,
    /// How long after the first attempt transient failures are still retried.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, given the `attempt`-th (1-based) failed.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_RETRY_AFTER);
        }
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let ceiling_ms = ceiling.as_millis() as u64;
        if ceiling_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_and_is_clamped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(7, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(99_999))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn backoff_stays_under_its_exponential_ceiling_and_the_cap() {
        let p = RetryPolicy::default();
        for attempt in 1..40 {
            let ceiling = Duration::from_secs(1 << (attempt - 1).min(20)).min(p.cap);
            for _ in 0..50 {
                assert!(p.delay(attempt, None) <= ceiling);
            }
        }
    }
}
