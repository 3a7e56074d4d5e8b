//! The leased queue that handoffs and callbacks are both worked from.
//!
//! A worker claims the next due row of an org that is not busy with one atomic `UPDATE …
//! RETURNING` that sets a lease (an id and an expiry); no database lock is held while the
//! work runs. Writes that finish the row apply only while the lease is still the claimer's
//! (fencing), so a worker whose lease expired and was taken over cannot overwrite the newer
//! outcome. A lease can be renewed (a heartbeat) and given back (a worker shutting down).
//! On PostgreSQL the claim's subquery takes `FOR UPDATE SKIP LOCKED`, so concurrent claimers
//! skip each other's rows; SQLite serialises writers and needs none.

use sqlx::any::AnyRow;
use uuid::Uuid;

use super::events::insert_event;
use super::{col, Backend, Store, StoreError};
use crate::domain::EventKind;
use crate::domain::NewEvent;

/// The two queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// `handoffs`, keyed by `handoff_id`.
    Handoffs,
    /// The callback outbox `callbacks`, keyed by `webhook_id`.
    Callbacks,
}

impl Queue {
    fn table(self) -> &'static str {
        match self {
            Self::Handoffs => "handoffs",
            Self::Callbacks => "callbacks",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Handoffs => "handoff_id",
            Self::Callbacks => "webhook_id",
        }
    }

    /// What is due at `$3` (now), as alternatives tried in turn, each a condition and the
    /// order it is picked in, both served by an index so a claim never sorts the backlog:
    /// handoffs whose lease expired (a worker died; index `handoffs_leases`), then queued ones
    /// past their time (`handoffs_due`).
    fn due(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Handoffs => &[
                ("state = 'processing' AND lease_until < $3", "lease_until"),
                (
                    "state = 'queued' AND next_attempt_at <= $3",
                    "next_attempt_at",
                ),
            ],
            Self::Callbacks => &[(
                "state = 'pending' AND next_attempt_at <= $3 \
                 AND (lease_until IS NULL OR lease_until < $3)",
                "next_attempt_at",
            )],
        }
    }

    /// What a claim sets besides the lease (`$2` lease end, `$3` now).
    fn on_claim(self) -> &'static str {
        match self {
            Self::Handoffs => {
                "state = 'processing', attempts = attempts + 1, \
                 first_attempt_at = COALESCE(first_attempt_at, $3)"
            }
            Self::Callbacks => "attempts = attempts + 1, next_attempt_at = $2",
        }
    }

    /// What giving a row back sets besides clearing the lease (`$1` now): due at once, and
    /// the claim's attempt taken back (a shutdown is not a failed attempt).
    fn on_release(self) -> &'static str {
        match self {
            Self::Handoffs => "state = 'queued', next_attempt_at = $1, attempts = attempts - 1",
            Self::Callbacks => "next_attempt_at = $1, attempts = attempts - 1",
        }
    }
}

/// A claimed row's lease: held until `until` (Unix ms) unless renewed; writes that finish
/// the row are fenced by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub queue: Queue,
    /// The row's key (`handoff_id` or `webhook_id`).
    pub key: String,
    pub id: String,
    pub until: i64,
}

/// Claims in progress: one transaction, committed by [`Claims::commit`] (dropped: none of
/// them happened). The work a claim hands out must not start before the commit: until then
/// its lease exists only inside this transaction.
///
/// A kind of due row (`Queue::due`) that came up empty is not looked for again in the same
/// batch, so each claim after the first costs one statement: pass the same busy orgs or
/// more with each claim of a batch, never fewer.
pub struct Claims<'s> {
    store: &'s Store,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    now: i64,
    lease_ms: i64,
    /// `(queue, index into queue.due())` found empty in this batch.
    exhausted: Vec<(Queue, usize)>,
}

impl Claims<'_> {
    /// Claims the row of `queue` that has waited longest among those due whose org is not
    /// in `busy_orgs`. Returns the row (its `columns`, which must include the queue's key)
    /// and the lease.
    pub(super) async fn claim(
        &mut self,
        queue: Queue,
        columns: &str,
        busy_orgs: &[String],
    ) -> Result<Option<(AnyRow, Lease)>, StoreError> {
        let lease = Lease {
            queue,
            key: String::new(),
            id: self.store.new_lease_id(),
            until: self.now.saturating_add(self.lease_ms),
        };
        let (table, key) = (queue.table(), queue.key());
        for (alternative, (due, order)) in queue.due().iter().enumerate() {
            if self.exhausted.contains(&(queue, alternative)) {
                continue;
            }
            let sql = format!(
                "UPDATE {table} SET lease_id = $1, lease_until = $2, updated_at = $3, {on_claim} \
                 WHERE {key} = (SELECT {key} FROM {table} WHERE {due} {not_busy} \
                   ORDER BY {order} LIMIT 1 {lock}) \
                 RETURNING {columns}",
                on_claim = queue.on_claim(),
                not_busy = not_in_orgs(4, busy_orgs.len()),
                lock = self.store.skip_locked(),
            );
            let mut query = sqlx::query(&sql)
                .bind(&lease.id)
                .bind(lease.until)
                .bind(self.now);
            for org in busy_orgs {
                query = query.bind(org);
            }
            if let Some(row) = query.fetch_optional(&mut *self.tx).await? {
                let key: String = col(&row, key)?;
                return Ok(Some((row, Lease { key, ..lease })));
            }
            self.exhausted.push((queue, alternative));
        }
        Ok(None)
    }

    /// Makes every claim of this batch take effect.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// `AND org_id NOT IN ($first, …)` for `count` bound org ids (empty for none).
pub(super) fn not_in_orgs(first: usize, count: usize) -> String {
    if count == 0 {
        return String::new();
    }
    let params: Vec<String> = (first..first + count).map(|i| format!("${i}")).collect();
    format!("AND org_id NOT IN ({})", params.join(", "))
}

impl Store {
    /// A lease id: `{owner}/{uuid}`, or the bare UUID without an owner.
    fn new_lease_id(&self) -> String {
        let id = Uuid::new_v4();
        if self.owner.is_empty() {
            id.to_string()
        } else {
            format!("{}/{id}", self.owner)
        }
    }

    /// Ends, as of `now`, the leases this owner took before (a restart of the same
    /// instance: they belong to the process that died), so its held handoffs and callbacks
    /// are claimed again at once instead of after their lease. Returns how many; none
    /// without an owner. The owner must be unique among live processes.
    pub async fn expire_own_leases(&self, now: i64) -> Result<u64, StoreError> {
        if self.owner.is_empty() {
            return Ok(0);
        }
        let prefix = format!("{}/", self.owner);
        let mut expired = 0;
        for queue in [Queue::Handoffs, Queue::Callbacks] {
            expired += sqlx::query(&format!(
                "UPDATE {table} SET lease_until = $1 \
                 WHERE lease_id IS NOT NULL AND substr(lease_id, 1, CAST($2 AS INTEGER)) = $3 AND lease_until >= $1",
                table = queue.table(),
            ))
            .bind(now.saturating_sub(1))
            .bind(prefix.chars().count() as i64)
            .bind(&prefix)
            .execute(self.writer())
            .await?
            .rows_affected();
        }
        Ok(expired)
    }

    /// The row-lock clause of a claim's subquery.
    fn skip_locked(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// Starts claiming at `now` with leases of `lease_ms`: every claim made through the
    /// returned [`Claims`] is taken in one transaction, so filling all of a worker's free
    /// slots costs one commit. Nothing is claimed until [`Claims::commit`].
    pub async fn begin_claims(&self, now: i64, lease_ms: i64) -> Result<Claims<'_>, StoreError> {
        Ok(Claims {
            store: self,
            tx: self.writer().begin().await?,
            now,
            lease_ms,
            exhausted: Vec::new(),
        })
    }

    /// Extends `lease` to `now + lease_ms` if it is still held (a heartbeat while the work
    /// runs). Returns `false` when the lease was lost: stop, another worker owns the row.
    pub async fn renew(
        &self,
        lease: &mut Lease,
        now: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let until = now.saturating_add(lease_ms);
        let (table, key) = (lease.queue.table(), lease.queue.key());
        let renewed = sqlx::query(&format!(
            "UPDATE {table} SET lease_until = $1 WHERE {key} = $2 AND lease_id = $3"
        ))
        .bind(until)
        .bind(&lease.key)
        .bind(&lease.id)
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1;
        if renewed {
            lease.until = until;
        }
        Ok(renewed)
    }

    /// Gives a claimed row back, due at `now` (a worker shutting down before the work
    /// finished), only while the lease is still `lease`. A handoff records it on its
    /// timeline. Returns whether it was given back.
    pub async fn release(&self, lease: &Lease, now: i64) -> Result<bool, StoreError> {
        let (table, key) = (lease.queue.table(), lease.queue.key());
        let mut tx = self.writer().begin().await?;
        let released = sqlx::query(&format!(
            "UPDATE {table} SET {on_release}, lease_id = NULL, lease_until = NULL, updated_at = $1 \
             WHERE {key} = $2 AND lease_id = $3",
            on_release = lease.queue.on_release(),
        ))
        .bind(now)
        .bind(&lease.key)
        .bind(&lease.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if released && lease.queue == Queue::Handoffs {
            let event = NewEvent {
                at: now,
                kind: EventKind::Released,
                detail: serde_json::json!({ "reason": "worker shutdown" }),
            };
            insert_event(&mut tx, &lease.key, &event).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    /// The soonest `next_attempt_at` among queued handoffs and pending callbacks, or the
    /// soonest lease expiry, of orgs not in `busy_orgs`: when the worker next has something
    /// it may claim.
    pub async fn next_due_at(&self, busy_orgs: &[String]) -> Result<Option<i64>, StoreError> {
        let not_busy = not_in_orgs(1, busy_orgs.len());
        let sql = format!(
            "SELECT MIN(t) AS due FROM ( \
               SELECT MIN(next_attempt_at) AS t FROM handoffs WHERE state = 'queued' {not_busy} \
               UNION ALL SELECT MIN(lease_until) AS t FROM handoffs WHERE state = 'processing' {not_busy} \
               UNION ALL SELECT MIN(next_attempt_at) AS t FROM callbacks WHERE state = 'pending' {not_busy} \
             ) AS due_times"
        );
        let mut query = sqlx::query(&sql);
        for org in busy_orgs {
            query = query.bind(org);
        }
        let row = query.fetch_one(self.pool()).await?;
        col(&row, "due")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewHandoff;

    async fn store_with(handoffs: &[(&str, &str)]) -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("q.db").display()))
            .await
            .unwrap();
        for (i, (org, session)) in handoffs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO orgs (org_id, name, webhook_secret_enc, created_at, updated_at) \
                 VALUES ($1, $1, 'x', 0, 0) ON CONFLICT DO NOTHING",
            )
            .bind(*org)
            .execute(store.writer())
            .await
            .unwrap();
            let new = NewHandoff {
                org_id: org,
                session_id: session,
                webhook_id: "msg",
                channel: "web",
                payload_version: crate::domain::QUEUED_PAYLOAD_VERSION,
                payload: "{}".into(),
            };
            store.intake(new, i as i64).await.unwrap();
        }
        (store, dir)
    }

    /// Claims one handoff in a batch of its own.
    async fn claim(
        store: &Store,
        columns: &str,
        now: i64,
        lease_ms: i64,
        busy: &[String],
    ) -> Result<Option<(AnyRow, Lease)>, StoreError> {
        let mut claims = store.begin_claims(now, lease_ms).await?;
        let claimed = claims.claim(Queue::Handoffs, columns, busy).await?;
        claims.commit().await?;
        Ok(claimed)
    }

    #[tokio::test]
    async fn a_batch_takes_effect_at_its_commit_and_not_at_all_when_dropped() {
        let (store, _dir) = store_with(&[("acme", "s1"), ("acme", "s2"), ("beta", "s3")]).await;
        let mut claims = store.begin_claims(10, 1_000).await.unwrap();
        let mut sessions = Vec::new();
        while let Some((row, _)) = claims
            .claim(Queue::Handoffs, "handoff_id, session_id", &[])
            .await
            .unwrap()
        {
            sessions.push(col::<String>(&row, "session_id").unwrap());
        }
        assert_eq!(sessions, ["s1", "s2", "s3"], "oldest first, each once");
        drop(claims);
        let again = claim(&store, "handoff_id", 10, 1_000, &[]).await.unwrap();
        assert!(again.is_some(), "a dropped batch claimed nothing");

        let mut claims = store.begin_claims(20, 1_000).await.unwrap();
        let mut claimed = 0;
        while claims
            .claim(Queue::Handoffs, "handoff_id", &[])
            .await
            .unwrap()
            .is_some()
        {
            claimed += 1;
        }
        claims.commit().await.unwrap();
        assert_eq!(claimed, 2, "the two left, in one commit");
        assert!(claim(&store, "handoff_id", 30, 1_000, &[])
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_lease_is_exclusive_renewable_and_fenced_after_it_expires() {
        let (store, _dir) = store_with(&[("acme", "s1")]).await;
        let (_, mut first) = claim(&store, "handoff_id", 100, 1_000, &[])
            .await
            .unwrap()
            .expect("due");
        assert_eq!(first.until, 1_100);
        assert!(claim(&store, "handoff_id", 200, 1_000, &[])
            .await
            .unwrap()
            .is_none());
        assert!(store.renew(&mut first, 1_000, 1_000).await.unwrap());
        assert_eq!(first.until, 2_000);
        assert!(claim(&store, "handoff_id", 1_500, 1_000, &[])
            .await
            .unwrap()
            .is_none());
        // Not renewed in time: another worker takes it, and the first lease is void.
        let (_, second) = claim(&store, "handoff_id", 2_001, 1_000, &[])
            .await
            .unwrap()
            .expect("taken over");
        assert_eq!(second.key, first.key);
        assert!(!store.renew(&mut first, 2_002, 1_000).await.unwrap());
        assert!(!store.release(&first, 2_002).await.unwrap());
        assert!(store.release(&second, 2_003).await.unwrap());
        assert!(claim(&store, "handoff_id", 2_003, 1_000, &[])
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn busy_orgs_are_passed_over() {
        let (store, _dir) = store_with(&[("acme", "s1"), ("acme", "s2"), ("beta", "s3")]).await;
        let busy = vec!["acme".to_owned()];
        let (row, _) = claim(&store, "handoff_id, session_id", 10, 1_000, &busy)
            .await
            .unwrap()
            .expect("beta's is due");
        assert_eq!(col::<String>(&row, "session_id").unwrap(), "s3");
        assert!(claim(&store, "handoff_id", 10, 1_000, &busy)
            .await
            .unwrap()
            .is_none());
        // Only beta's lease expiry is left for a worker that passes acme over.
        assert_eq!(store.next_due_at(&busy).await.unwrap(), Some(1_010));
        assert_eq!(store.next_due_at(&[]).await.unwrap(), Some(0));
    }
}
