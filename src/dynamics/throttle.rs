//! Per-environment limits on Dataverse traffic from this process.
//!
//! Service protection limits (Microsoft Learn, "Service protection API limits"; docs/sources.md#service-protection) allow
//! 52 concurrent requests per user and answer 429 with `Retry-After` past a limit; Microsoft
//! asks clients to wait the full period before sending again. Each environment gets a gate: a
//! semaphore of `max_concurrent` permits (default 8, far under 52) and a pause deadline set
//! by a 429. While an environment is paused, requests are not sent: they fail at once with
//! [`Paused`], so the handoff is re-queued for the end of the pause instead of holding a worker
//! slot that other tenants need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::clock::Clock;

/// Default concurrent Dataverse requests per environment and process.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;

/// The environment is paused after a 429 for this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("requests to this environment are paused for {} ms more after a 429", .0.as_millis())]
pub struct Paused(pub Duration);

struct Gate {
    permits: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
}

/// The gates of every environment this process talks to.
pub struct Gates {
    max_concurrent: usize,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// Pauses end by this clock.
    clock: Arc<Clock>,
}

impl Gates {
    pub fn new(max_concurrent: usize, clock: Arc<Clock>) -> Self {
        Self {
            max_concurrent: max_concurrent.max(1),
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

    /// Waits for a permit to send one request to `environment`; fails at once while the
    /// environment is paused. Hold the permit until the answer has been read.
    pub async fn enter(&self, environment: &str) -> Result<OwnedSemaphorePermit, Paused> {
        let gate = self.gate(environment);
        if let Some(left) = self.remaining_pause(&gate) {
            return Err(Paused(left));
        }
        let permit = gate
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // A 429 may have arrived while this request waited for its permit.
        match self.remaining_pause(&gate) {
            Some(left) => Err(Paused(left)),
            None => Ok(permit),
        }
    }

    /// Pauses `environment` for `wait` (a 429's `Retry-After`), at most
    /// [`MAX_RETRY_AFTER`](crate::outbound::MAX_RETRY_AFTER); a longer pause already in force is kept.
    pub fn pause(&self, environment: &str, wait: Duration) {
        let new_until = crate::outbound::deadline_after(
            self.clock.instant(),
            wait.min(crate::outbound::MAX_RETRY_AFTER),
        );
        let gate = self.gate(environment);
        let mut until = gate
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until.is_none_or(|u| u < new_until) {
            *until = Some(new_until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_refuses_entry_until_it_ends() {
        let gates = Gates::new(2, Arc::default());
        assert!(gates.enter("https://a").await.is_ok());
        gates.pause("https://a", Duration::from_secs(30));
        let refused = gates.enter("https://a").await.unwrap_err();
        assert!(refused.0 > Duration::from_secs(29));
        assert!(
            gates.enter("https://b").await.is_ok(),
            "other environments are not paused"
        );
        gates.pause("https://a", Duration::from_secs(1));
        assert!(
            gates.enter("https://a").await.unwrap_err().0 > Duration::from_secs(29),
            "the longer pause is kept"
        );
    }

    #[tokio::test]
    async fn a_huge_pause_is_clamped_and_leaves_the_gate_usable() {
        let gates = Gates::new(2, Arc::default());
        gates.pause("https://a", Duration::MAX);
        let left = gates.enter("https://a").await.unwrap_err().0;
        assert!(left <= crate::outbound::MAX_RETRY_AFTER, "{left:?}");
        assert!(left > crate::outbound::MAX_RETRY_AFTER - Duration::from_secs(5));
        gates.pause("https://a", Duration::from_secs(1));
        assert!(gates.enter("https://b").await.is_ok());
    }

    #[tokio::test]
    async fn permits_bound_concurrency() {
        let gates = Gates::new(2, Arc::default());
        let _a = gates.enter("https://a").await.unwrap();
        let _b = gates.enter("https://a").await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), gates.enter("https://a")).await;
        assert!(third.is_err(), "a third request waits for a permit");
        drop(_a);
        assert!(gates.enter("https://a").await.is_ok());
    }
}
