//! The worker: claims due handoffs and callbacks with a lease and runs them, a few at a time.
//!
//! Claiming is one atomic `UPDATE … RETURNING` that sets a short lease; no database lock is
//! held during the HTTP calls. While a job runs its lease is renewed every third of its
//! length (a heartbeat), so a slow job keeps it; a worker that dies stops renewing, and any
//! worker takes the job again within one lease; the deterministic keys make the second run
//! safe. A worker that is
//! asked to stop finishes its jobs within the grace period and gives back the leases of
//! those it had to abandon, so they run again at once elsewhere.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::job::JobContext;
use super::retry::RetryPolicy;
use crate::clock::{millis, Clock};
use crate::connection::vault::Vault;
use crate::domain::{Ended, HandoffState};
use crate::dynamics::Dataverse;
use crate::metrics::Metrics;
use crate::store::{CallbackRow, Claim, Claims, Lease, Store, StoreError};
use crate::wake::Wake;

/// What the worker runs with, and nothing more. `App::build` makes one and shares it (as
/// `Arc<Worker>`) between the worker loop, its jobs and the HTTP state, which only wakes it.
pub struct Worker {
    pub store: Store,
    /// Opens the client secret of a connection and the webhook secret that signs callbacks.
    pub vault: Vault,
    /// Entra ID tokens and Dataverse traffic (the token cache, the per-environment gates).
    pub dataverse: Arc<Dataverse>,
    /// OpenCX's API: thin events' sessions and the write-back, paced per API key.
    pub opencx: Arc<crate::opencx::OpenCx>,
    /// Outbound HTTP for callbacks: its own pool, timeouts set, no redirects, and the
    /// address policy applied when it connects (`handoff::address`).
    pub callbacks: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// The service's clock: claims, outcomes and retries are timed by it.
    pub clock: Arc<Clock>,
    pub settings: WorkerSettings,
    /// Wakes the worker loop when an org has new work (the webhook route, the retry and
    /// connection routes, a connection checked again).
    pub wake: Arc<Wake>,
    /// Orgs whose environment (or token requests) an attempt found paused after a 429, and
    /// until when (Unix ms): their handoffs are not claimed meanwhile, so a throttled tenant
    /// costs no claims and no worker slots.
    pub paused_orgs: std::sync::Mutex<HashMap<String, i64>>,
}

/// How the worker runs its jobs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub retry: RetryPolicy,
    /// How long a claimed job is owned before another worker may take it.
    pub lease: Duration,
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// Jobs of one org run at once by this process (tenant fairness).
    pub org_concurrency: usize,
    /// On shutdown, how long jobs in flight may take before they are given back.
    pub shutdown_grace: Duration,
    /// How long a settled handoff keeps the visitor's session before it is redacted.
    pub retention: Duration,
    /// Development mode: loopback `http://` environments and callback URLs are admitted.
    pub allow_insecure: bool,
}

impl Worker {
    /// Remembers that `org`'s requests are paused until `until` (Unix ms).
    fn pause_org(&self, org: &str, until: i64) {
        let mut paused = self
            .paused_orgs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = paused.entry(org.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// `busy` and the orgs paused now; and when the first of those pauses ends.
    fn orgs_to_skip(&self, mut busy: Vec<String>) -> (Vec<String>, Option<i64>) {
        let now = self.clock.now_ms();
        let mut paused = self
            .paused_orgs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paused.retain(|_, until| *until > now);
        busy.extend(paused.keys().cloned());
        busy.sort();
        busy.dedup();
        (busy, paused.values().min().copied())
    }

    /// What a handoff attempt works with: this process's store, vault and Dataverse, its
    /// retry policy, and the system clock.
    pub fn job(&self) -> JobContext<'_, Arc<Dataverse>> {
        JobContext {
            store: &self.store,
            vault: &self.vault,
            dataverse: &self.dataverse,
            opencx: &self.opencx,
            retry: self.settings.retry,
            allow_insecure: self.settings.allow_insecure,
            clock: &self.clock,
        }
    }
}

/// One unit of work.
enum Job {
    Handoff(Box<Claim>),
    Callback(Box<CallbackRow>, Lease),
}

impl Job {
    /// What to give back if the job is abandoned.
    fn lease(&self) -> Lease {
        match self {
            Job::Handoff(c) => c.lease.clone(),
            Job::Callback(_, lease) => lease.clone(),
        }
    }

    fn org_id(&self) -> &str {
        match self {
            Job::Handoff(c) => &c.handoff.org_id,
            Job::Callback(cb, _) => &cb.org_id,
        }
    }
}

/// Longest sleep between two looks at the queue when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// How long a saved connection goes without a check before the worker checks it again
/// (its card then shows a secret that expired or a role that was taken away, even when no
/// handoff came to meet it).
pub const RECHECK_EVERY: Duration = Duration::from_secs(3600);
/// Connections checked again in one pass of the schedule, at most (each check is a token
/// request and three to five Dataverse requests; the next pass takes the rest).
const RECHECKS_PER_PASS: i64 = 50;

/// Runs the connection checks of `org_id` again and records them on its card, as `POST
/// …/connection/check` does (a pass wakes the org's waiting handoffs). `reason` goes in
/// the log. A store error is logged; nothing else can fail.
pub async fn recheck_connection(worker: &Worker, org_id: &str, reason: &str) {
    let conn = match worker.store.connection(org_id).await {
        Ok(Some(conn)) => conn,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the connection to check it again");
            return;
        }
    };
    let rules = crate::connection::orgs::OrgRules {
        store: &worker.store,
        vault: &worker.vault,
        dataverse: &worker.dataverse,
        opencx: &worker.opencx,
        allow_insecure: worker.settings.allow_insecure,
    };
    match rules.check_again(&conn, worker.clock.now_ms()).await {
        Ok((status, _)) => {
            tracing::info!(
                org_id,
                status = status.as_str(),
                reason,
                "connection checked again"
            );
            worker.wake.org(org_id);
        }
        Err(e) => tracing::warn!(org_id, error = %e, "could not record the connection check"),
    }
}

/// Checks again the connections not checked for [`RECHECK_EVERY`] as of `now` (Unix ms),
/// at most [`RECHECKS_PER_PASS`], oldest first. Returns how many. The worker runs it on its
/// hourly tick, in a task of its own.
pub async fn recheck_stale(worker: &Worker, now: i64) -> Result<usize, StoreError> {
    let stale = worker
        .store
        .connections_checked_before(now - millis(RECHECK_EVERY), RECHECKS_PER_PASS)
        .await?;
    for org_id in &stale {
        recheck_connection(worker, org_id, "scheduled").await;
    }
    Ok(stale.len())
}

/// How often the worker redacts handoffs whose retention period ended.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Removes the session from every handoff that settled more than the retention period
/// (`Settings::retention`) before `now` (Unix ms). Returns how many were redacted. The worker
/// runs this at start and hourly; several replicas running it at once is harmless.
pub async fn enforce_retention(worker: &Worker, now: i64) -> Result<u64, StoreError> {
    let retention_ms = millis(worker.settings.retention);
    let redacted = worker
        .store
        .redact_settled(now.saturating_sub(retention_ms), now)
        .await?;
    if redacted > 0 {
        tracing::info!(redacted, "removed sessions whose retention period ended");
    }
    Ok(redacted)
}

/// Claims, within `claims`, the next due job of an org not in `busy_orgs`: a handoff
/// first, else a callback.
async fn claim_next(
    claims: &mut Claims<'_>,
    busy_orgs: &[String],
) -> Result<Option<Job>, StoreError> {
    if let Some(claim) = claims.handoff(busy_orgs).await? {
        return Ok(Some(Job::Handoff(Box::new(claim))));
    }
    Ok(claims
        .callback(busy_orgs)
        .await?
        .map(|(cb, lease)| Job::Callback(Box::new(cb), lease)))
}

/// Runs `work` while renewing `lease` every third of the lease time (a heartbeat): a live
/// worker keeps its row however long the work takes, and a dead one loses it within one
/// lease. `None` when the lease was lost (the row was taken over, e.g. after this process
/// stalled past its lease): the work is dropped, since its outcome would be fenced off.
async fn with_heartbeat<T>(
    worker: &Worker,
    mut lease: Lease,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let lease_ms = millis(worker.settings.lease);
    let every = (worker.settings.lease / 3).max(Duration::from_millis(50));
    let mut beats = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            _ = beats.tick() => {
                match worker.store.renew(&mut lease, worker.clock.now_ms(), lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(key = %lease.key, "the lease was lost; another worker owns the job now");
                        return None;
                    }
                    Err(e) => tracing::warn!(key = %lease.key, error = %e, "could not renew the lease; trying again at the next beat"),
                }
            }
        }
    }
}

async fn run_job(worker: Arc<Worker>, job: Job) {
    match job {
        Job::Handoff(claim) => {
            let span = tracing::info_span!(
                "handoff",
                handoff_id = %claim.handoff.handoff_id,
                org_id = %claim.handoff.org_id,
                session_id = %claim.handoff.session_id,
                attempt = claim.handoff.attempts,
            );
            async {
                let started = std::time::Instant::now();
                let job = worker.job();
                let attempt = caught(super::attempt(&job, &claim));
                let Some(attempt) = with_heartbeat(&worker, claim.lease.clone(), attempt).await
                else {
                    return;
                };
                let outcome = match attempt {
                    Ok(outcome) => outcome,
                    Err(what) => {
                        tracing::error!(panic = %what, "the handoff attempt panicked; it is recorded and retried");
                        super::panicked(&job, &claim, &what)
                    }
                };
                let duration_ms = started.elapsed().as_millis() as u64;
                let code = outcome.ended.error().map(|d| d.code.as_str());
                match worker.store.finish_handoff(&claim, &outcome, worker.clock.now_ms()).await {
                    Ok(true) => {
                        if let Some(until) = outcome.paused_until {
                            worker.pause_org(&claim.handoff.org_id, until);
                        }
                        let state = outcome.ended.state();
                        let metric_outcome = match outcome.ended {
                            Ended::RetryScheduled { .. } => "retry_scheduled",
                            Ended::Waiting { .. } => "waiting",
                            _ => state.as_str(),
                        };
                        worker.metrics.attempt_finished(
                            &claim.handoff.org_id,
                            metric_outcome,
                            code,
                            started.elapsed().as_secs_f64(),
                        );
                        if state == HandoffState::Failed {
                            // Nothing retries it: an admin has to act, so it is a warning.
                            tracing::warn!(
                                state = state.as_str(),
                                code = code.unwrap_or(""),
                                duration_ms,
                                "handoff failed for good; its record has the code and hint"
                            );
                            // The connection's own fault: its card shows the full checks.
                            if code.is_some_and(crate::domain::catalog::is_connection_level) {
                                recheck_connection(
                                    &worker,
                                    &claim.handoff.org_id,
                                    "a handoff failed for a reason of the connection",
                                )
                                .await;
                            }
                        } else {
                            tracing::info!(
                                state = state.as_str(),
                                code = code.unwrap_or(""),
                                duration_ms,
                                "handoff attempt finished"
                            )
                        }
                    }
                    Ok(false) => tracing::warn!(
                        duration_ms,
                        "handoff lease was lost; another worker owns it now"
                    ),
                    // The lease will expire and the attempt runs again; the key makes that safe.
                    Err(e) => tracing::error!(error = %e, "could not record the handoff outcome"),
                }
            }
            .instrument(span)
            .await
        }
        Job::Callback(cb, lease) => {
            let span =
                tracing::info_span!("callback", webhook_id = %cb.webhook_id, org_id = %cb.org_id);
            async {
                let delivery = super::callback::deliver(&worker, &cb, &lease);
                if let Some(Err(e)) = with_heartbeat(&worker, lease.clone(), delivery).await {
                    tracing::error!(error = %e, "could not record the callback outcome");
                }
            }
            .instrument(span)
            .await
        }
    }
}

/// Runs `job`, turning a panic into `Err(its message)` so the caller can record it.
pub(super) async fn caught<T>(job: impl std::future::Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(job)
        .catch_unwind()
        .await
        .map_err(|panic| panic_message(panic.as_ref()))
}

/// The message of a caught panic (`&str` or `String` payloads; anything else is unnamed).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The orgs in `per_org` (jobs running per org) that run `cap` jobs or more: they may claim
/// nothing more until one ends (tenant fairness: one org cannot take every slot).
fn busy_orgs(per_org: &HashMap<String, usize>, cap: usize) -> Vec<String> {
    let mut busy: Vec<String> = per_org
        .iter()
        .filter(|(_, n)| **n >= cap.max(1))
        .map(|(org, _)| org.clone())
        .collect();
    busy.sort();
    busy
}

/// The jobs this worker is running, with their leases and orgs.
#[derive(Default)]
struct Running {
    set: JoinSet<()>,
    leases: HashMap<Id, Lease>,
    orgs: HashMap<Id, String>,
    /// What the last claim that found nothing showed, while it still holds.
    dry: Option<Dry>,
}

/// A claim passing over the orgs `skip` (busy or paused) found nothing due, and nothing of
/// the other orgs falls due before `due` (Unix ms; `None`: nothing is scheduled). Until
/// something new arrives for another org (a wake naming it, or a job of it ending: it is
/// forgotten then) or `due` passes, a claim that passes over at least these orgs would find
/// nothing either, so it is not run: with one org's backlog filling its share of the slots,
/// every freed slot (and every delivery of that org) would otherwise pay a scan of that
/// whole backlog for some other org's row, twice (the claim and the next due time).
struct Dry {
    skip: Vec<String>,
    due: Option<i64>,
}

impl Dry {
    /// Whether it still holds after new work arrived for the `woken` orgs: only when it
    /// passed over every one of them.
    fn outlives(&self, woken: &HashSet<String>) -> bool {
        woken.iter().all(|org| self.skip.contains(org))
    }

    /// Whether a claim passing over `skip` at `now` is known to find nothing.
    fn covers(&self, skip: &[String], now: i64) -> bool {
        self.due.is_none_or(|due| now < due) && self.skip.iter().all(|o| skip.contains(o))
    }
}

impl Running {
    /// How many jobs each org runs here.
    fn per_org(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for org in self.orgs.values() {
            *counts.entry(org.clone()).or_default() += 1;
        }
        counts
    }

    /// Claims jobs for every free slot in one transaction (one commit however many), then
    /// starts them. Returns how many started, and whether the queue ran dry with the orgs
    /// that were passed over for being busy or paused (the next due time must leave those
    /// out) and when the first pause ends.
    async fn fill(
        &mut self,
        worker: &Arc<Worker>,
    ) -> Result<(usize, Option<(Vec<String>, Option<i64>)>), StoreError> {
        // New work of an org the last empty claim passed over changes nothing it showed.
        let woken = worker.wake.take();
        if self.dry.as_ref().is_some_and(|d| !d.outlives(&woken)) {
            self.dry = None;
        }
        let free = worker.settings.concurrency.saturating_sub(self.set.len());
        if free == 0 {
            return Ok((0, None));
        }
        let mut per_org = self.per_org();
        let mut claims = worker
            .store
            .begin_claims(worker.clock.now_ms(), millis(worker.settings.lease))
            .await?;
        let mut jobs = Vec::new();
        let mut dry = None;
        while jobs.len() < free {
            let (skip, pause_ends) =
                worker.orgs_to_skip(busy_orgs(&per_org, worker.settings.org_concurrency));
            let known_dry = self
                .dry
                .as_ref()
                .is_some_and(|d| d.covers(&skip, worker.clock.now_ms()));
            let claimed = if known_dry {
                None
            } else {
                claim_next(&mut claims, &skip).await?
            };
            let Some(job) = claimed else {
                dry = Some((skip, pause_ends));
                break;
            };
            *per_org.entry(job.org_id().to_owned()).or_default() += 1;
            jobs.push(job);
        }
        claims.commit().await?;
        let started = jobs.len();
        for job in jobs {
            let lease = job.lease();
            let org = job.org_id().to_owned();
            let handle = self.set.spawn(run_job(worker.clone(), job));
            self.leases.insert(handle.id(), lease);
            self.orgs.insert(handle.id(), org);
        }
        Ok((started, dry))
    }

    /// Waits for a job to end, and takes every other that ended too; `None` when none runs.
    /// A job that ended (or panicked: its lease will expire) is forgotten; an aborted one
    /// keeps its lease, to be given back.
    async fn join_ended(&mut self) -> Option<()> {
        let ended = self.set.join_next_with_id().await?;
        self.forget(ended);
        // Others that ended meanwhile are forgotten too, so the next fill claims for all
        // their slots in one transaction instead of one claim each.
        while let Some(ended) = self.set.try_join_next_with_id() {
            self.forget(ended);
        }
        Some(())
    }

    /// Forgets a job that ended; an aborted one keeps its lease, to be given back.
    fn forget(&mut self, ended: Result<(Id, ()), tokio::task::JoinError>) {
        let (id, keep_lease) = match ended {
            Ok((id, ())) => (id, false),
            Err(e) => (e.id(), e.is_cancelled()),
        };
        // The job may have left new work of its org due now (a retry, a callback): what the
        // last empty claim showed holds only for orgs it passed over.
        if let Some(org) = self.orgs.remove(&id) {
            if self.dry.as_ref().is_some_and(|d| !d.skip.contains(&org)) {
                self.dry = None;
            }
        }
        if !keep_lease {
            self.leases.remove(&id);
        }
    }

    /// Lets the jobs finish within `grace`; aborts the rest and gives their leases back.
    async fn stop(mut self, worker: &Worker, grace: Duration) {
        let finished =
            tokio::time::timeout(grace, async { while self.join_ended().await.is_some() {} }).await;
        if finished.is_ok() {
            return;
        }
        self.set.abort_all();
        while self.join_ended().await.is_some() {}
        let now = worker.clock.now_ms();
        for lease in self.leases.into_values() {
            match worker.store.release(&lease, now).await {
                Ok(_) => {
                    tracing::info!(key = %lease.key, "gave back an unfinished job at shutdown")
                }
                Err(e) => {
                    tracing::warn!(key = %lease.key, error = %e, "could not give back a job; its lease will expire")
                }
            }
        }
    }
}

/// Runs the jobs that are due, up to `concurrency` at a time, until a claim finds none;
/// then waits for those in flight and returns how many ran. A retry that a job schedules
/// for "now" runs on the next call, so one call always ends. Tests call this to drain the
/// queue deterministically.
pub async fn run_due(worker: &Arc<Worker>) -> Result<usize, StoreError> {
    let mut running = Running::default();
    let mut ran = 0;
    let mut queue_empty = false;
    loop {
        if !queue_empty {
            let (started, dry) = running.fill(worker).await?;
            ran += started;
            // Passed-over busy orgs may have more due once one of their jobs ends (paused
            // ones are the next call's: their pause has not ended).
            queue_empty = dry.is_some_and(|(skip, _)| {
                skip.iter()
                    .all(|org| !running.orgs.values().any(|o| o == org))
            });
        }
        if running.join_ended().await.is_none() {
            return Ok(ran);
        }
    }
}

/// The worker loop: keeps up to `concurrency` jobs running, sleeping when nothing is due
/// until woken (a new handoff), the next due time, or `IDLE_POLL`. When `shutdown` is
/// cancelled it claims nothing more and stops as described in `Running::stop`.
pub async fn run(worker: Arc<Worker>, shutdown: CancellationToken) {
    // Work this instance held before a crash is its own to resume, at once.
    match worker.store.expire_own_leases(worker.clock.now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            jobs = n,
            "resuming the jobs this instance held before it stopped"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not take back this instance's earlier leases; they end on their own")
        }
    }
    let mut running = Running::default();
    let mut retention_due = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= retention_due {
            retention_due += RETENTION_EVERY;
            if let Err(e) = enforce_retention(&worker, worker.clock.now_ms()).await {
                tracing::warn!(error = %e, "could not redact expired sessions; trying again later");
            }
            // One pacer entry per OpenCX API key would otherwise stay for the process's life.
            worker.opencx.forget_quiet_keys();
            // Connections no handoff met for an hour are checked again, in the background.
            let rechecks = worker.clone();
            tokio::spawn(async move {
                if let Err(e) = recheck_stale(&rechecks, rechecks.clock.now_ms()).await {
                    tracing::warn!(error = %e, "could not list the connections to check again");
                }
            });
        }
        let wait = match running.fill(&worker).await {
            Ok((_, None)) => None,
            Ok((_, Some((skip, pause_ends)))) => {
                let now = worker.clock.now_ms();
                let due = match &running.dry {
                    Some(dry) if dry.covers(&skip, now) => dry.due,
                    _ => {
                        let due = worker.store.next_due_at(&skip).await.ok().flatten();
                        running.dry = Some(Dry { skip, due });
                        due
                    }
                };
                let soonest = due.into_iter().chain(pause_ends).min();
                Some(soonest.map_or(IDLE_POLL, |at| {
                    Duration::from_millis(
                        (at - worker.clock.now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
                    )
                }))
            }
            Err(e) => {
                tracing::error!(error = %e, "the worker cannot reach the store; trying again shortly");
                Some(Duration::from_secs(1))
            }
        };
        // A job that ended frees its org's slot and changes nothing else; a wake (new work:
        // the next fill sees for which orgs) or the next due time may make what the last
        // empty claim showed stale.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = running.join_ended(), if !running.set.is_empty() => {}
            _ = worker.wake.notified(), if wait.is_some() => {}
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => running.dry = None,
        }
    }
    tracing::info!(in_flight = running.set.len(), "worker stopping");
    running.stop(&worker, worker.settings.shutdown_grace).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_claim_is_known_to_stay_empty_only_over_at_least_its_orgs_and_until_due() {
        let dry = Dry {
            skip: vec!["acme".to_owned()],
            due: Some(1_000),
        };
        let orgs = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert!(dry.covers(&orgs(&["acme"]), 999));
        assert!(
            dry.covers(&orgs(&["acme", "beta"]), 999),
            "passing over more finds less"
        );
        assert!(
            !dry.covers(&orgs(&[]), 999),
            "acme's slot is free: its rows count again"
        );
        assert!(!dry.covers(&orgs(&["acme"]), 1_000), "something fell due");
        let woken = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        assert!(dry.outlives(&woken(&["acme"])), "acme was passed over");
        assert!(
            !dry.outlives(&woken(&["acme", "beta"])),
            "beta's new work was not looked for"
        );
        let nothing_scheduled = Dry {
            skip: Vec::new(),
            due: None,
        };
        assert!(nothing_scheduled.covers(&orgs(&[]), i64::MAX));
    }

    #[tokio::test]
    async fn a_panicking_job_becomes_an_error_with_its_message() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let boom = caught(async {
            if std::hint::black_box(true) {
                panic!("overflow when adding duration to instant");
            }
        })
        .await;
        assert_eq!(
            boom,
            Err("overflow when adding duration to instant".to_owned())
        );
        let formatted = caught(async {
            let n = std::hint::black_box(3);
            if n == 3 {
                panic!("attempt {n}");
            }
        })
        .await;
        assert_eq!(formatted, Err("attempt 3".to_owned()));
    }
}
