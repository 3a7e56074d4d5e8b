//! Webhook intake: a delivery becomes a new handoff, or an event on the one its session
//! already has. Deliveries arriving together share one commit (`group.rs`).

use sqlx::AnyConnection;
use uuid::Uuid;

use super::group::{pending, Write};
use super::handoffs::{HandoffRow, Intake, NewHandoff, HANDOFF_COLUMNS, MAX_DUPLICATE_EVENTS};
use super::{Store, StoreError};
use crate::domain::EventKind;

/// One delivery to write, owned so it can wait in the write queue.
pub(super) struct IntakeRow {
    handoff_id: String,
    org_id: String,
    session_id: String,
    webhook_id: String,
    channel: String,
    payload_version: i64,
    payload: String,
    now: i64,
}

impl Store {
    /// Stores a webhook delivery at `now` (Unix ms): a new handoff, or, when the session
    /// already has one, a `duplicate_delivery` event on it (none for a replay of a delivery
    /// already recorded, and at most `MAX_DUPLICATE_EVENTS` per handoff). Returns only after
    /// the transaction that holds it committed; deliveries arriving together share one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database refused or could not be reached (then
    /// nothing of this delivery was written).
    pub async fn intake(&self, new: NewHandoff<'_>, now: i64) -> Result<Intake, StoreError> {
        let row = IntakeRow {
            handoff_id: Uuid::new_v4().to_string(),
            org_id: new.org_id.to_owned(),
            session_id: new.session_id.to_owned(),
            webhook_id: new.webhook_id.to_owned(),
            channel: new.channel.to_owned(),
            payload_version: new.payload_version,
            payload: new.payload,
            now,
        };
        self.group_write(pending(row, Write::Intake)).await
    }
}

/// Writes one delivery inside the caller's transaction.
pub(super) async fn write_intake(
    conn: &mut AnyConnection,
    new: &IntakeRow,
) -> Result<Intake, StoreError> {
    // The write comes first so SQLite takes its write lock at once (no read→write upgrade);
    // a new row comes back from it, an existing one is read after.
    let inserted = sqlx::query(&format!(
        "INSERT INTO handoffs (handoff_id, org_id, session_id, webhook_id, channel, payload_version, \
         payload, state, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $8, $6, 'queued', 0, $7, $7, $7) \
         ON CONFLICT (org_id, session_id) DO NOTHING RETURNING {HANDOFF_COLUMNS}"
    ))
    .bind(&new.handoff_id)
    .bind(&new.org_id)
    .bind(&new.session_id)
    .bind(&new.webhook_id)
    .bind(&new.channel)
    .bind(&new.payload)
    .bind(new.now)
    .bind(new.payload_version)
    .fetch_optional(&mut *conn)
    .await?;
    let (handoff, kind) = match inserted {
        Some(row) => (HandoffRow::from_row(&row)?, EventKind::Received),
        None => {
            let row = sqlx::query(&format!(
                "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE org_id = $1 AND session_id = $2"
            ))
            .bind(&new.org_id)
            .bind(&new.session_id)
            .fetch_one(&mut *conn)
            .await?;
            (HandoffRow::from_row(&row)?, EventKind::DuplicateDelivery)
        }
    };
    // A replay of a delivery already recorded adds nothing; other redeliveries add one
    // event each, up to MAX_DUPLICATE_EVENTS per handoff.
    sqlx::query(
        "INSERT INTO handoff_events (handoff_id, at, kind, detail, webhook_id) \
         SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS ( \
           SELECT 1 FROM handoff_events WHERE handoff_id = $1 AND webhook_id = $5) \
         AND (SELECT COUNT(*) FROM handoff_events WHERE handoff_id = $1 AND kind = $7) < $6",
    )
    .bind(&handoff.handoff_id)
    .bind(new.now)
    .bind(kind.as_str())
    .bind(serde_json::json!({ "webhook_id": new.webhook_id }).to_string())
    .bind(&new.webhook_id)
    .bind(MAX_DUPLICATE_EVENTS)
    .bind(EventKind::DuplicateDelivery.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(match kind {
        EventKind::Received => Intake::Stored(handoff),
        _ => Intake::Duplicate(handoff),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_arriving_together_are_each_answered_and_a_refused_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::testing::store_with_acme(dir.path()).await;
        // 60 sessions, each delivered twice under two webhook ids, and one delivery for an
        // org that does not exist (the foreign key refuses it), all at once: the writer is
        // held until all of them wait, so they form one batch.
        let held = store.writer().acquire().await.unwrap();
        let mut deliveries = tokio::task::JoinSet::new();
        for i in 0..120 {
            let store = store.clone();
            deliveries.spawn(async move {
                let (org, session) = if i == 77 {
                    ("ghost".to_owned(), "s-ghost".to_owned())
                } else {
                    ("acme".to_owned(), format!("s-{}", i % 60))
                };
                let webhook_id = format!("msg_{i}");
                let new = NewHandoff {
                    org_id: &org,
                    session_id: &session,
                    webhook_id: &webhook_id,
                    channel: "web",
                    payload_version: crate::domain::QUEUED_PAYLOAD_VERSION,
                    payload: "{}".into(),
                };
                let result = store.intake(new, 1_000 + i).await;
                (session, result)
            });
        }
        store.writes.until_queued(120).await;
        drop(held);
        let mut stored = std::collections::HashMap::new();
        let (mut duplicates, mut refused) = (0, 0);
        while let Some(joined) = deliveries.join_next().await {
            match joined.unwrap() {
                (session, Ok(Intake::Stored(row))) => {
                    assert_eq!(row.session_id, session);
                    assert!(
                        stored.insert(session, row.handoff_id).is_none(),
                        "stored twice"
                    );
                }
                (_, Ok(Intake::Duplicate(_))) => duplicates += 1,
                (session, Err(e)) => {
                    assert_eq!(session, "s-ghost");
                    assert!(e.to_string().contains("FOREIGN KEY"), "{e}");
                    refused += 1;
                }
            }
        }
        // Session 17's second delivery was the ghost's, so 17 was delivered once.
        assert_eq!((stored.len(), duplicates, refused), (60, 59, 1));
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM handoffs")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 60, "nothing of the refused delivery, nothing twice");
        let received: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM handoff_events WHERE kind = 'received'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        let duplicate_events: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM handoff_events WHERE kind = 'duplicate_delivery'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((received, duplicate_events), (60, 59));
    }
}
