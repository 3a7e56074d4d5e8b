//! Group commit: every write waiting for the store at one moment — webhook deliveries
//! (`intake.rs`), handoff outcomes (`handoffs.rs`) and callback outcomes (`callbacks.rs`) —
//! goes into one transaction (one commit, one `fsync` on SQLite), and each waiting caller
//! is answered only after that commit, so what an answer promises is what it promised with
//! a transaction each.
//!
//! A write that finds no drainer running starts one. The drainer takes the
//! connection that writes, then everything queued (up to [`MAX_BATCH`]), so every write that
//! arrived while the previous commit ran joins the next; it goes on until the queue is
//! empty. It is a task of its own, so a caller dropped mid-commit (its client went away)
//! cancels nothing of the others. A batch that fails is rolled back and its writes are
//! applied again, a transaction each, so a write the database refuses fails alone and
//! nothing half-written is left.

use std::sync::Mutex;

use sqlx::AnyConnection;
use tokio::sync::oneshot;

use super::callbacks::{write_callback_outcome, CallbackOutcome};
use super::handoffs::{write_handoff_outcome, HandoffOutcome, Intake};
use super::intake::{write_intake, write_new_intakes, IntakeRow};
use super::{Store, StoreError};

/// Most writes in one transaction.
pub const MAX_BATCH: usize = 256;

/// Writes waiting for the next commit, and whether a drainer runs.
#[derive(Default)]
pub(super) struct WriteQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    writes: Vec<Write>,
    /// A drainer task runs and will take what is queued.
    draining: bool,
}

impl WriteQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `n` writes wait (tests hold the writer and watch a batch form).
    ///
    /// # Panics
    /// After 10 s with fewer queued.
    #[cfg(test)]
    pub(super) async fn until_queued(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.lock().writes.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} writes were not queued within 10 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

/// Marks the drainer gone if it ends other than by finding the queue empty (a panic, or its
/// runtime shutting down), so the next write starts another instead of queueing forever.
struct Draining<'q> {
    queue: &'q WriteQueue,
    armed: bool,
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.queue.lock().draining = false;
        }
    }
}

/// One queued write: its input, what it wrote, and who waits for the answer.
pub(super) struct Pending<I, T> {
    input: I,
    done: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<I, T> Pending<I, T> {
    /// Answers with what was written, or with `err`.
    fn answer(self, err: Option<StoreError>) {
        let result = match (err, self.done) {
            (Some(e), _) => Err(e),
            (None, Some(done)) => Ok(done),
            // Not reachable: a write is answered without an error only after it applied.
            (None, None) => Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed)),
        };
        let _ = self.reply.send(result);
    }
}

/// The kinds of write that share commits.
pub(super) enum Write {
    Intake(Box<Pending<IntakeRow, Intake>>),
    HandoffOutcome(Box<Pending<HandoffOutcome, bool>>),
    CallbackOutcome(Box<Pending<CallbackOutcome, bool>>),
}

impl Write {
    /// Applies the write inside the caller's transaction and keeps what it wrote; nothing
    /// when it was written already (a new session, by [`write_new_intakes`]).
    async fn apply(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        match self {
            Self::Intake(p) if p.done.is_some() => {}
            Self::Intake(p) => p.done = Some(write_intake(conn, &p.input).await?),
            Self::HandoffOutcome(p) => p.done = Some(write_handoff_outcome(conn, &p.input).await?),
            Self::CallbackOutcome(p) => {
                p.done = Some(write_callback_outcome(conn, &p.input).await?)
            }
        }
        Ok(())
    }

    fn answer(self, err: Option<StoreError>) {
        match self {
            Self::Intake(p) => (*p).answer(err),
            Self::HandoffOutcome(p) => (*p).answer(err),
            Self::CallbackOutcome(p) => (*p).answer(err),
        }
    }

    /// Forgets what a rolled-back transaction wrote.
    fn reset(&mut self) {
        match self {
            Self::Intake(p) => p.done = None,
            Self::HandoffOutcome(p) => p.done = None,
            Self::CallbackOutcome(p) => p.done = None,
        }
    }
}

/// Makes a [`Write`] of `input` that answers on the returned receiver.
pub(super) fn pending<I, T>(
    input: I,
    kind: fn(Box<Pending<I, T>>) -> Write,
) -> (Write, oneshot::Receiver<Result<T, StoreError>>) {
    let (reply, answer) = oneshot::channel();
    let write = kind(Box::new(Pending {
        input,
        done: None,
        reply,
    }));
    (write, answer)
}

impl Store {
    /// Queues `write` for the next commit and waits for its answer.
    ///
    /// # Errors
    /// The write's own error, or [`StoreError::Unavailable`] when the database refused or
    /// could not be reached (then nothing of this write is stored).
    pub(super) async fn group_write<T>(
        &self,
        (write, answer): (Write, oneshot::Receiver<Result<T, StoreError>>),
    ) -> Result<T, StoreError> {
        let start = {
            let mut queue = self.writes.lock();
            queue.writes.push(write);
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            let store = self.clone();
            tokio::spawn(async move { store.drain_writes().await });
        }
        // The drainer answers every write it takes; a dropped answer means it died (a
        // panic, or the runtime shutting down) before the commit.
        answer
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::WorkerCrashed))?
    }

    /// Commits queued writes, a batch per transaction, until none is left.
    async fn drain_writes(&self) {
        let mut draining = Draining {
            queue: &self.writes,
            armed: true,
        };
        loop {
            let conn = self.writer().acquire().await;
            let mut batch: Vec<Write> = {
                let mut queue = self.writes.lock();
                let n = queue.writes.len().min(MAX_BATCH);
                if n == 0 {
                    queue.draining = false;
                    draining.armed = false;
                    return;
                }
                queue.writes.drain(..n).collect()
            };
            let mut conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "no connection to write with; answering the waiting writes with the error");
                    let closed = matches!(e, sqlx::Error::PoolClosed);
                    for write in batch {
                        let e = if closed {
                            sqlx::Error::PoolClosed
                        } else {
                            sqlx::Error::PoolTimedOut
                        };
                        write.answer(Some(StoreError::Unavailable(e)));
                    }
                    continue;
                }
            };
            match commit(&mut conn, &mut batch).await {
                Ok(()) => batch.into_iter().for_each(|w| w.answer(None)),
                Err(e) if batch.len() == 1 => {
                    if let Some(write) = batch.pop() {
                        write.answer(Some(e));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, writes = batch.len(), "a batch of writes could not be committed together; committing them one by one");
                    for mut write in batch {
                        write.reset();
                        let mut one = [write];
                        let err = commit(&mut conn, &mut one).await.err();
                        let [write] = one;
                        write.answer(err);
                    }
                }
            }
        }
    }
}

/// Applies `batch` in one transaction and commits it: the deliveries of new sessions first,
/// a few multi-row statements for all of them, then every other write in arrival order
/// (outcomes concern handoffs committed before, so none depends on a delivery beside it).
async fn commit(conn: &mut AnyConnection, batch: &mut [Write]) -> Result<(), StoreError> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut intakes: Vec<&mut Pending<IntakeRow, Intake>> = batch
        .iter_mut()
        .filter_map(|w| match w {
            Write::Intake(p) => Some(&mut **p),
            _ => None,
        })
        .collect();
    if intakes.len() > 1 {
        let rows: Vec<&IntakeRow> = intakes.iter().map(|p| &p.input).collect();
        let written = write_new_intakes(&mut tx, &rows).await?;
        for (p, done) in intakes.iter_mut().zip(written) {
            p.done = done;
        }
    }
    for write in batch.iter_mut() {
        write.apply(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::DATAVERSE_UNAVAILABLE;
    use crate::domain::{Ended, EventKind, NewEvent, Outcome, QUEUED_PAYLOAD_VERSION};
    use crate::store::NewHandoff;

    fn new_handoff(session: &str) -> NewHandoff<'_> {
        NewHandoff {
            org_id: "acme",
            session_id: session,
            webhook_id: session,
            channel: "web",
            payload_version: QUEUED_PAYLOAD_VERSION,
            payload: "{}".into(),
        }
    }

    fn retry_at(at: i64) -> Outcome {
        Outcome {
            ended: Ended::RetryScheduled {
                error: DATAVERSE_UNAVAILABLE.diagnose(None),
                next_attempt_at: at,
            },
            contact_match: None,
            contact_id: None,
            events: vec![NewEvent {
                at,
                kind: EventKind::RetryScheduled,
                detail: serde_json::json!({}),
            }],
            callback: None,
            write_back: None,
            enriched: None,
            delayed_at: None,
            paused_until: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_intake_and_two_outcomes_share_a_commit_and_a_lost_lease_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::testing::store_with_acme(dir.path()).await;
        store.intake(new_handoff("s-1"), 0).await.unwrap();
        store.intake(new_handoff("s-2"), 0).await.unwrap();
        let held = store.claim_handoff(10, 1_000, &[]).await.unwrap().unwrap();
        let mut lost = store.claim_handoff(10, 1_000, &[]).await.unwrap().unwrap();
        lost.lease.id = "someone-else".into();

        // With the writer held, an intake and two outcomes queue up and commit together.
        let writer = store.writer().acquire().await.unwrap();
        let (a, b, c) = (store.clone(), store.clone(), store.clone());
        let intake = tokio::spawn(async move { a.intake(new_handoff("s-3"), 20).await });
        let finished =
            tokio::spawn(async move { b.finish_handoff(&held, &retry_at(500), 20).await });
        let fenced = tokio::spawn(async move { c.finish_handoff(&lost, &retry_at(600), 20).await });
        store.writes.until_queued(3).await;
        drop(writer);
        assert!(matches!(intake.await.unwrap().unwrap(), Intake::Stored(_)));
        assert!(finished.await.unwrap().unwrap());
        assert!(
            !fenced.await.unwrap().unwrap(),
            "the lease was not this claim's"
        );

        let retries: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM handoff_events WHERE kind = 'retry_scheduled'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(retries, 1, "only the held lease's outcome was written");
        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM handoffs WHERE state = 'queued'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(
            queued, 2,
            "s-3 is new and s-1 back in the queue; s-2 still processing"
        );
    }

    #[test]
    fn a_drainer_that_died_is_replaced_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let first = tokio::runtime::Runtime::new().unwrap();
        let store = first.block_on(crate::store::testing::store_with_acme(dir.path()));
        // A drainer waits for the writer, then its runtime goes away with it.
        let held = first.block_on(store.writer().acquire()).unwrap();
        let queued = store.clone();
        first.spawn(async move { queued.intake(new_handoff("s-1"), 0).await });
        first.block_on(store.writes.until_queued(1));
        first.shutdown_timeout(std::time::Duration::from_secs(5));

        let second = tokio::runtime::Runtime::new().unwrap();
        second.block_on(async {
            drop(held);
            let written = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                store.intake(new_handoff("s-2"), 0),
            )
            .await
            .expect("the write queue is not stuck")
            .unwrap();
            assert!(matches!(written, Intake::Stored(_)));
            // The orphaned write went in with it: nobody waits for its answer, but it is
            // stored, as its caller was never told otherwise.
            assert!(store.handoff("acme", "s-1").await.unwrap().is_some());
        });
    }
}
