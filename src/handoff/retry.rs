//! The retry policy: when to try again after a transient failure. It is made for a person
//! waiting in a chat window.
//!
//! Which failures are transient is decided where they are defined
//! (`dynamics::failure::RetryClass`): no answer (connect error, timeout, reset), HTTP 5xx and
//! 408, HTTP 429, and Entra ID throttling or unavailability.
//!
//! - **Within an attempt**, an idempotent request (the contact lookup, and the creates,
//!   which carry their own keys) that fails transiently without a `Retry-After` is sent
//!   again after `quick_base` and then 4 × that (250 ms, 1 s by default): most blips cost
//!   about a second, not a backoff step.
//! - **Between attempts**, a `Retry-After` (seconds) is honored as sent, clamped to one
//!   hour; otherwise the delay is exponential backoff with full jitter (AWS Architecture
//!   Blog, "Exponential Backoff And Jitter"): uniform in `[0, min(cap, base · 2^(n-1))]`,
//!   where `cap` is `early_cap` (15 s) during the first `early_window` (5 minutes) after the
//!   first attempt — while a visitor may still be waiting — and `cap` (10 minutes) after.
//! - A handoff still without a work item `delayed_after` (a minute) after its first attempt
//!   tells the widget backend once (`handoff.delayed`), so it can tell the visitor; one still
//!   without past `chat_expiry` (an hour) fails with `chat_expired`, so the widget can offer
//!   another way. A wait (no connection, a paused environment) is cut short for both.
//! - A handoff that keeps failing transiently past `give_up_after` fails with
//!   `retries_exhausted`.

use std::time::Duration;

use rand::Rng;

use crate::outbound::MAX_RETRY_AFTER;

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Upper bound of the first retry's delay.
    pub base: Duration,
    /// Largest delay between two attempts, once `early_window` has passed.
    pub cap: Duration,
    /// Largest delay between two attempts during `early_window`.
    pub early_cap: Duration,
    /// How long after the first attempt `early_cap` applies.
    pub early_window: Duration,
    /// How often a transiently failing idempotent request is sent again within one attempt.
    pub quick_retries: u32,
    /// The delay before the first quick retry; each next one waits 4 × longer.
    pub quick_base: Duration,
    /// How long after the first attempt transient failures are still retried.
    pub give_up_after: Duration,
    /// How long a handoff may wait without a live work item before the widget backend is
    /// told (one `handoff.delayed` callback), counted from the first attempt.
    pub delayed_after: Duration,
    /// How long a chat handoff may wait without a live work item before it fails with
    /// `chat_expired` (a `handoff.failed` callback), counted from the first attempt: past
    /// it nobody is waiting in the chat any more.
    pub chat_expiry: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            early_cap: Duration::from_secs(15),
            early_window: Duration::from_secs(300),
            quick_retries: 2,
            quick_base: Duration::from_millis(250),
            give_up_after: Duration::from_secs(24 * 3600),
            delayed_after: Duration::from_secs(60),
            chat_expiry: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, given the `attempt`-th (1-based) failed
    /// `since_first` after the first attempt.
    pub fn delay(
        &self,
        attempt: u32,
        since_first: Duration,
        retry_after: Option<Duration>,
    ) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(MAX_RETRY_AFTER);
        }
        let cap = if since_first < self.early_window {
            self.early_cap.min(self.cap)
        } else {
            self.cap
        };
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(cap);
        let ceiling_ms = ceiling.as_millis() as u64;
        if ceiling_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling_ms))
    }

    /// The delay before quick retry `n` (0-based) within an attempt, or `None` when the
    /// attempt has had its quick retries.
    pub fn quick_delay(&self, n: u32) -> Option<Duration> {
        (n < self.quick_retries).then(|| {
            self.quick_base
                .saturating_mul(4u32.saturating_pow(n))
                .min(self.early_cap)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_and_is_clamped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(7, Duration::ZERO, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
        assert_eq!(
            p.delay(1, Duration::ZERO, Some(Duration::from_secs(99_999))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn backoff_stays_under_its_exponential_ceiling_and_the_cap_of_its_window() {
        let p = RetryPolicy::default();
        let late = p.early_window;
        for attempt in 1..40 {
            let ceiling = Duration::from_secs(1 << (attempt - 1).min(20));
            for _ in 0..50 {
                assert!(p.delay(attempt, Duration::ZERO, None) <= ceiling.min(p.early_cap));
                assert!(p.delay(attempt, late, None) <= ceiling.min(p.cap));
            }
        }
        // Late attempts may wait past the early cap (some of 200 draws do).
        assert!((0..200).any(|_| p.delay(12, late, None) > p.early_cap));
    }

    #[test]
    fn quick_retries_are_few_and_short() {
        let p = RetryPolicy::default();
        assert_eq!(p.quick_delay(0), Some(Duration::from_millis(250)));
        assert_eq!(p.quick_delay(1), Some(Duration::from_millis(1000)));
        assert_eq!(p.quick_delay(2), None);
        let many = RetryPolicy {
            quick_retries: 40,
            ..p
        };
        assert!(many.quick_delay(39).unwrap() <= p.early_cap, "bounded");
    }
}
