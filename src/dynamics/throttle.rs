//! Per-environment limits on Dataverse traffic from this process.
//!
//! Service protection limits (Microsoft Learn, "Service protection API limits";
//! docs/sources.md#service-protection) allow, per user, 6,000 requests in a 5-minute sliding
//! window and 52 concurrent requests, and answer 429 with `Retry-After` past a limit;
//! Microsoft asks clients to wait the full period before sending again. Each environment
//! gets a gate:
//!
//! - a **pacer**, a token bucket ([`governor`], GCRA) sized from [`Pacing`]: no window of the
//!   configured length holds more than 98 % of its requests (96 % sustained plus a burst of
//!   2 %; for a limit under 100 a window, at most the limit), so the bridge works at the
//!   ceiling without bursting into it. A 429 says the ceiling
//!   is lower than configured (another client spends the same user's budget): the pacer
//!   drops to 80 % of its rate (never under 10 % of the configured one) and climbs back by
//!   5 % of it per window without a 429;
//! - a semaphore of `max_concurrent` permits (default 8, far under 52);
//! - a pause deadline set by a 429. While an environment is paused, requests are not sent:
//!   they fail at once with [`Paused`], so the handoff is re-queued for the end of the pause
//!   instead of holding a worker slot that other tenants need. A request whose turn at the
//!   pacer is more than [`MAX_PACE_WAIT`] away fails the same way.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::clock::Clock;

/// Default concurrent Dataverse requests per environment and process.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;

/// The longest a request waits for its turn at the pacer; past it the request is not sent
/// and the handoff is re-queued ([`Paused`]) outside the worker's slots.
pub const MAX_PACE_WAIT: Duration = Duration::from_secs(2);

/// How many requests one process may send to one environment: `requests` in any `window`
/// (Dataverse: 6,000 per 300 s per user, [`Pacing::DATAVERSE`]). With several replicas, or
/// other clients on the same application user, give each its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub requests: u32,
    pub window: Duration,
}

impl Pacing {
    /// Dataverse's documented service protection limit per user: 6,000 requests in a
    /// 5-minute sliding window.
    pub const DATAVERSE: Self = Self {
        requests: 6_000,
        window: Duration::from_secs(300),
    };

    /// The pacer's quota at `share` (0.1–1) of this pacing: 96 % of the requests spread over
    /// the window, and a burst of 2 %, at least 2 (a turn taken a little late, as timers
    /// wake, is made up at the next one instead of lost) as long as the window's total stays
    /// within the limit: for fewer than 100 requests a window, 96 % and the burst may add up
    /// to all of it.
    fn quota(self, share: f64) -> Quota {
        let limit = (f64::from(self.requests) * share).floor().max(1.0);
        let sustained = (limit * 0.96).floor().max(1.0);
        let burst = (limit * 0.02)
            .floor()
            .max(2.0)
            .min(limit - sustained)
            .max(1.0);
        let whole =
            |n: f64| NonZeroU32::new(n.min(f64::from(u32::MAX)) as u32).unwrap_or(NonZeroU32::MIN);
        let period = self.window.max(Duration::from_millis(1)) / whole(sustained).get();
        Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("a period of at least 1 ns")
            .allow_burst(whole(burst))
    }
}

/// Why a request to an environment was not sent, and for how long that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Paused {
    /// A 429 paused the environment for this long more.
    #[error("requests to this environment are paused for {} ms more after a 429", .0.as_millis())]
    After429(Duration),
    /// The environment's pacer has its next turn this far away (more than [`MAX_PACE_WAIT`]).
    #[error("the bridge paces this environment under its service protection limit; the next request may go in {} ms", .0.as_millis())]
    Paced(Duration),
}

impl Paused {
    /// How long until a request may go.
    pub fn wait(self) -> Duration {
        match self {
            Self::After429(wait) | Self::Paced(wait) => wait,
        }
    }
}

/// An environment's token bucket, at `share` of the configured pacing since `since`; when a
/// 429 last lowered it.
struct Pacer {
    limiter: DefaultDirectRateLimiter,
    share: f64,
    since: Instant,
    last_cut: Option<Instant>,
}

struct Gate {
    permits: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
    pacer: Mutex<Pacer>,
}

/// The gates of every environment this process talks to.
pub struct Gates {
    max_concurrent: usize,
    pacing: Pacing,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// Pauses end by this clock.
    clock: Arc<Clock>,
}

/// The pacer's share after a 429, and its floor.
const SHARE_AFTER_429: f64 = 0.8;
const MIN_SHARE: f64 = 0.1;
/// 429s closer together than this lower the share once (the requests of one burst in flight).
const CUT_SPACING: Duration = Duration::from_secs(1);
/// What the share climbs back by per window without a 429.
const SHARE_STEP: f64 = 0.05;

impl Gates {
    /// Gates of `max_concurrent` requests at once (at least 1), paced at `pacing`.
    pub fn new(max_concurrent: usize, pacing: Pacing, clock: Arc<Clock>) -> Self {
        Self {
            max_concurrent: max_concurrent.max(1),
            pacing,
            gates: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn gate(&self, environment: &str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        gates
            .entry(environment.to_owned())
            .or_insert_with(|| {
                Arc::new(Gate {
                    permits: Arc::new(Semaphore::new(self.max_concurrent)),
                    paused_until: Mutex::new(None),
                    pacer: Mutex::new(Pacer {
                        limiter: RateLimiter::direct(self.pacing.quota(1.0)),
                        share: 1.0,
                        since: self.clock.instant(),
                        last_cut: None,
                    }),
                })
            })
            .clone()
    }

    fn remaining_pause(&self, gate: &Gate) -> Option<Duration> {
        let until = (*gate
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner))?;
        until
            .checked_duration_since(self.clock.instant())
            .filter(|d| !d.is_zero())
    }

    /// Takes the environment's next turn at its pacer: `None` when it is now, else how long
    /// until it (nothing taken). A share lowered by a 429 climbs back first, a step per
    /// window gone by without one.
    fn pace(&self, gate: &Gate) -> Option<Duration> {
        let mut pacer = gate.pacer.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.instant();
        let window = self.pacing.window.max(Duration::from_millis(1));
        if pacer.share < 1.0 && now.duration_since(pacer.since) >= window {
            pacer.share = (pacer.share + SHARE_STEP).min(1.0);
            pacer.since = now;
            pacer.limiter = RateLimiter::direct(self.pacing.quota(pacer.share));
        }
        match pacer.limiter.check() {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(DefaultClock::default().now())),
        }
    }

    /// The share of the configured pacing `environment` is paced at now (1 until a 429).
    #[cfg(test)]
    fn pacing_share(&self, environment: &str) -> f64 {
        self.gate(environment)
            .pacer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .share
    }

    /// Waits for the environment's turn at its pacer (up to [`MAX_PACE_WAIT`]) and for a
    /// permit to send one request to it; fails at once while the environment is paused, or
    /// when its turn is further away. Hold the permit until the answer has been read.
    pub async fn enter(&self, environment: &str) -> Result<OwnedSemaphorePermit, Paused> {
        let gate = self.gate(environment);
        loop {
            if let Some(left) = self.remaining_pause(&gate) {
                return Err(Paused::After429(left));
            }
            match self.pace(&gate) {
                None => break,
                Some(wait) if wait > MAX_PACE_WAIT => return Err(Paused::Paced(wait)),
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
        let permit = gate
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // A 429 may have arrived while this request waited for its permit.
        match self.remaining_pause(&gate) {
            Some(left) => Err(Paused::After429(left)),
            None => Ok(permit),
        }
    }

    /// Pauses `environment` for `wait` (a 429's `Retry-After`), at most
    /// [`MAX_RETRY_AFTER`](crate::outbound::MAX_RETRY_AFTER); a longer pause already in force
    /// is kept. Its pacer drops to 80 % of its rate (429s within a second of each other, the
    /// requests of one burst, count once).
    pub fn pause(&self, environment: &str, wait: Duration) {
        let now = self.clock.instant();
        let new_until =
            crate::outbound::deadline_after(now, wait.min(crate::outbound::MAX_RETRY_AFTER));
        let gate = self.gate(environment);
        {
            let mut until = gate
                .paused_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if until.is_none_or(|u| u < new_until) {
                *until = Some(new_until);
            }
        }
        let mut pacer = gate.pacer.lock().unwrap_or_else(PoisonError::into_inner);
        if pacer
            .last_cut
            .is_none_or(|cut| now.duration_since(cut) >= CUT_SPACING)
        {
            pacer.share = (pacer.share * SHARE_AFTER_429).max(MIN_SHARE);
            pacer.since = now;
            pacer.last_cut = Some(now);
            pacer.limiter = RateLimiter::direct(self.pacing.quota(pacer.share));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_refuses_entry_until_it_ends() {
        let gates = Gates::new(2, Pacing::DATAVERSE, Arc::default());
        assert!(gates.enter("https://a").await.is_ok());
        gates.pause("https://a", Duration::from_secs(30));
        let refused = gates.enter("https://a").await.unwrap_err();
        assert!(refused.wait() > Duration::from_secs(29));
        assert!(
            gates.enter("https://b").await.is_ok(),
            "other environments are not paused"
        );
        gates.pause("https://a", Duration::from_secs(1));
        assert!(
            gates.enter("https://a").await.unwrap_err().wait() > Duration::from_secs(29),
            "the longer pause is kept"
        );
    }

    #[tokio::test]
    async fn a_huge_pause_is_clamped_and_leaves_the_gate_usable() {
        let gates = Gates::new(2, Pacing::DATAVERSE, Arc::default());
        gates.pause("https://a", Duration::MAX);
        let left = gates.enter("https://a").await.unwrap_err().wait();
        assert!(left <= crate::outbound::MAX_RETRY_AFTER, "{left:?}");
        assert!(left > crate::outbound::MAX_RETRY_AFTER - Duration::from_secs(5));
        gates.pause("https://a", Duration::from_secs(1));
        assert!(gates.enter("https://b").await.is_ok());
    }

    #[test]
    fn no_window_holds_more_than_the_limit() {
        for (requests, secs) in [
            (6_000, 300),
            (50, 1),
            (20, 1),
            (2, 1),
            (1, 1),
            (100_000, 60),
        ] {
            let pacing = Pacing {
                requests,
                window: Duration::from_secs(secs),
            };
            let quota = pacing.quota(1.0);
            let per_window = quota.burst_size().get() as f64
                + secs as f64 / quota.replenish_interval().as_secs_f64();
            // 98 % from 100 requests a window; all of it (and at least 2) below.
            let most = if requests >= 100 {
                requests as f64 * 0.98
            } else {
                (requests as f64).max(2.0)
            };
            assert!(
                per_window <= most + 0.01,
                "{requests}/{secs}s: {per_window}"
            );
            assert!(
                per_window >= requests as f64 * 0.95 - 1.0,
                "{requests}/{secs}s: {per_window}"
            );
        }
        // The documented limit: 5,760 spread over 300 s (19.2/s) and a burst of 120.
        let quota = Pacing::DATAVERSE.quota(1.0);
        assert_eq!(quota.burst_size().get(), 120);
        assert_eq!(quota.replenish_interval(), Duration::from_secs(300) / 5_760);
    }

    #[tokio::test]
    async fn the_pacer_sends_at_its_rate_and_a_429_slows_it_until_windows_pass() {
        let clock = Arc::new(Clock::system());
        let pacing = Pacing {
            requests: 100,
            window: Duration::from_secs(1),
        };
        let gates = Gates::new(8, pacing, clock.clone());
        // The burst (2) goes at once; the next turn is about 1/96 s away.
        for _ in 0..2 {
            drop(gates.enter("https://a").await.unwrap());
        }
        let gate = gates.gate("https://a");
        let wait = gates.pace(&gate).expect("the burst is spent");
        assert!(wait <= Duration::from_millis(11), "{wait:?}");
        // A far pacing: a turn more than MAX_PACE_WAIT away is refused, not waited for.
        let slow = Gates::new(
            8,
            Pacing {
                requests: 1,
                window: Duration::from_secs(300),
            },
            clock.clone(),
        );
        drop(slow.enter("https://a").await.unwrap());
        let refused = slow.enter("https://a").await.unwrap_err();
        assert!(
            matches!(refused, Paused::Paced(wait) if wait > MAX_PACE_WAIT),
            "{refused:?}"
        );

        // A 429 lowers the share once for a burst of them, again a second later.
        gates.pause("https://a", Duration::ZERO);
        gates.pause("https://a", Duration::ZERO);
        assert!((gates.pacing_share("https://a") - 0.8).abs() < 1e-9);
        clock.advance(Duration::from_secs(1));
        gates.pause("https://a", Duration::ZERO);
        assert!((gates.pacing_share("https://a") - 0.64).abs() < 1e-9);
        // Each window without a 429 gives back 5 % of the configured rate.
        clock.advance(Duration::from_secs(1));
        let _ = gates.pace(&gates.gate("https://a"));
        assert!((gates.pacing_share("https://a") - 0.69).abs() < 1e-9);
        for _ in 0..20 {
            clock.advance(Duration::from_secs(1));
            let _ = gates.pace(&gates.gate("https://a"));
        }
        assert_eq!(gates.pacing_share("https://a"), 1.0);
        // Never under 10 %.
        for _ in 0..30 {
            clock.advance(Duration::from_secs(1));
            gates.pause("https://a", Duration::ZERO);
        }
        assert!((gates.pacing_share("https://a") - 0.1).abs() < 1e-9);
    }

    #[tokio::test]
    async fn permits_bound_concurrency() {
        let gates = Gates::new(2, Pacing::DATAVERSE, Arc::default());
        let _a = gates.enter("https://a").await.unwrap();
        let _b = gates.enter("https://a").await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), gates.enter("https://a")).await;
        assert!(third.is_err(), "a third request waits for a permit");
        drop(_a);
        assert!(gates.enter("https://a").await.is_ok());
    }
}
