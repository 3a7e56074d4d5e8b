//! The worker's wake-up: the routes that make work due (a webhook, a retry, a connection
//! saved or checked) say for which org, so a worker whose last claim passed over that org
//! (it runs its share of the slots) does not look through the queue again for nothing.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Wakes the worker loop, naming the orgs that have new work. Shared as `Arc<Wake>` between
/// the HTTP state, the worker and its jobs.
#[derive(Default)]
pub struct Wake {
    notify: Notify,
    /// Orgs woken since the worker last took them (at most one entry per org).
    orgs: Mutex<HashSet<String>>,
}

impl Wake {
    /// Tells the worker that `org_id` has work due now. A wake while the worker is busy is
    /// kept (one permit), not lost.
    pub fn org(&self, org_id: &str) {
        {
            let mut orgs = self.lock();
            if !orgs.contains(org_id) {
                orgs.insert(org_id.to_owned());
            }
        }
        self.notify.notify_one();
    }

    /// Waits for the next wake (at once when one came while nobody waited).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The orgs woken since the last call, forgotten as they are returned.
    pub fn take(&self) -> HashSet<String> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.orgs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_names_its_orgs_once_and_is_kept_until_awaited() {
        let wake = Wake::default();
        wake.org("acme");
        wake.org("acme");
        wake.org("beta");
        // Nobody was waiting: the wake is kept.
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
            .await
            .expect("the wake was kept");
        let mut orgs: Vec<String> = wake.take().into_iter().collect();
        orgs.sort();
        assert_eq!(orgs, ["acme", "beta"]);
        assert!(wake.take().is_empty(), "taken orgs are forgotten");
    }
}
