//! The worker: claims due handoffs and callbacks with a lease and runs them, a few at a time.
//!
//! Claiming is one atomic `UPDATE … RETURNING` that sets a lease; no database lock is held
//! during the HTTP calls. A worker that dies leaves the lease to expire, and any worker then
//! takes the job again; the deterministic keys make the second run safe.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::store::{now_ms, CallbackRow, Claim, StoreError};
use crate::Context;

/// One unit of work.
enum Job {
    Handoff(Claim),
    Callback(CallbackRow, String),
}

/// Longest sleep between two looks at the queue when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(5);

async fn claim_next(ctx: &Context) -> Result<Option<Job>, StoreError> {
    let now = now_ms();
    let lease_ms = ctx.settings.lease.as_millis() as i64;
    if let Some(claim) = ctx.store.claim_handoff(now, lease_ms).await? {
        return Ok(Some(Job::Handoff(claim)));
    }
    Ok(ctx
        .store
        .claim_callback(now, lease_ms)
        .await?
        .map(|(cb, lease)| Job::Callback(cb, lease)))
}

async fn run_job(ctx: Arc<Context>, job: Job) {
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
                let outcome = super::attempt(&ctx, &claim).await;
                let duration_ms = started.elapsed().as_millis() as u64;
                let code = outcome
                    .error
                    .as_ref()
                    .map(|d| d.code.as_str())
                    .unwrap_or("");
                match ctx.store.finish_handoff(&claim, &outcome, now_ms()).await {
                    Ok(true) => tracing::info!(
                        state = outcome.state.as_str(),
                        code,
                        duration_ms,
                        "handoff attempt finished"
                    ),
                    Ok(false) => tracing::warn!(
                        duration_ms,
                        "handoff lease was lost; another worker owns it now"
                    ),
                    // The lease will expire and the attempt runs again; the key makes that safe.
                    Err(e) => tracing::error!(error = %e, "could not record the handoff outcome"),
                }
                ctx.settled.notify_waiters();
            }
            .instrument(span)
            .await
        }
        Job::Callback(cb, lease) => {
            let span =
                tracing::info_span!("callback", webhook_id = %cb.webhook_id, org_id = %cb.org_id);
            async {
                if let Err(e) = super::callback::deliver(&ctx, &cb, &lease).await {
                    tracing::error!(error = %e, "could not record the callback outcome");
                }
                ctx.settled.notify_waiters();
            }
            .instrument(span)
            .await
        }
    }
}

/// Runs the jobs that are due, up to `concurrency` at a time, until a claim finds none;
/// then waits for those in flight and returns how many ran. A retry that a job schedules
/// for "now" runs on the next call, so one call always ends. Tests call this to drain the
/// queue deterministically.
pub async fn run_due(ctx: &Arc<Context>) -> Result<usize, StoreError> {
    let mut running = JoinSet::new();
    let mut ran = 0;
    let mut queue_empty = false;
    loop {
        while !queue_empty && running.len() < ctx.settings.concurrency {
            match claim_next(ctx).await? {
                Some(job) => {
                    ran += 1;
                    running.spawn(run_job(ctx.clone(), job));
                }
                None => queue_empty = true,
            }
        }
        if running.join_next().await.is_none() {
            return Ok(ran);
        }
    }
}

/// The worker loop: runs due jobs, then sleeps until woken (a new handoff), the next due
/// time, or `IDLE_POLL`, whichever is first. Stops when `shutdown` is cancelled, after the
/// jobs in flight finish.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let wait = match run_due(&ctx).await {
            Ok(_) => match ctx.store.next_due_at().await {
                Ok(Some(due)) => Duration::from_millis(
                    (due - now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
                ),
                Ok(None) => IDLE_POLL,
                Err(_) => IDLE_POLL,
            },
            Err(e) => {
                tracing::error!(error = %e, "the worker cannot reach the store; trying again shortly");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
