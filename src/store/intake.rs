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

impl IntakeRow {
    /// The handoff this delivery makes when its session is new, as [`write_new_intakes`]
    /// inserted it (the same row `write_intake` reads back).
    fn queued(&self) -> HandoffRow {
        HandoffRow {
            handoff_id: self.handoff_id.clone(),
            org_id: self.org_id.clone(),
            session_id: self.session_id.clone(),
            webhook_id: self.webhook_id.clone(),
            channel: self.channel.clone(),
            payload_version: self.payload_version,
            payload: self.payload.clone(),
            state: crate::domain::HandoffState::Queued,
            contact_match: None,
            contact_id: None,
            dynamics365_chat_id: None,
            workstream_id: None,
            dynamics365_incident_id: None,
            dynamics365_ticket_number: None,
            attempts: 0,
            next_attempt_at: self.now,
            first_attempt_at: None,
            last_error: None,
            created_at: self.now,
            delayed_at: None,
            updated_at: self.now,
            redacted_at: None,
        }
    }
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

/// Most deliveries in one multi-row `INSERT` (10 bound values each: SQLite allows 32,766
/// bound values, PostgreSQL 65,535).
const ROWS_PER_INSERT: usize = 128;

/// Writes the new sessions of `rows` inside the caller's transaction, a multi-row `INSERT`
/// per [`ROWS_PER_INSERT`] for the handoffs and another for their `received` events, so a
/// batch costs a few statements instead of two per delivery. Returns, for each row, its
/// [`Intake::Stored`] when it made a new handoff, `None` when its session already had one
/// (stored before, or earlier in `rows`): [`write_intake`] writes those one by one, as
/// duplicates.
///
/// # Errors
/// Any statement's error; the caller rolls the transaction back (and applies the batch's
/// writes one by one, so a delivery the database refuses fails alone).
pub(super) async fn write_new_intakes(
    conn: &mut AnyConnection,
    rows: &[&IntakeRow],
) -> Result<Vec<Option<Intake>>, StoreError> {
    let mut stored = std::collections::HashSet::new();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO handoffs (handoff_id, org_id, session_id, webhook_id, channel, \
             payload_version, payload, next_attempt_at, created_at, updated_at, state, attempts) \
             VALUES {} ON CONFLICT (org_id, session_id) DO NOTHING RETURNING handoff_id",
            placeholders(chunk.len(), 10, "'queued', 0")
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for row in chunk {
            query = query
                .bind(&row.handoff_id)
                .bind(&row.org_id)
                .bind(&row.session_id)
                .bind(&row.webhook_id)
                .bind(&row.channel)
                .bind(row.payload_version)
                .bind(&row.payload)
                .bind(row.now)
                .bind(row.now)
                .bind(row.now);
        }
        for inserted in query.fetch_all(&mut *conn).await? {
            stored.insert(super::col::<String>(&inserted, "handoff_id")?);
        }
    }
    let new: Vec<&IntakeRow> = rows
        .iter()
        .copied()
        .filter(|r| stored.contains(&r.handoff_id))
        .collect();
    for chunk in new.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO handoff_events (handoff_id, at, kind, detail, webhook_id) VALUES {}",
            placeholders(chunk.len(), 5, "")
        );
        let mut query = sqlx::query(&sql).persistent(false);
        for row in chunk {
            query = query
                .bind(&row.handoff_id)
                .bind(row.now)
                .bind(EventKind::Received.as_str())
                .bind(delivery_detail(&row.webhook_id))
                .bind(&row.webhook_id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(rows
        .iter()
        .map(|r| {
            stored
                .contains(&r.handoff_id)
                .then(|| Intake::Stored(r.queued()))
        })
        .collect())
}

/// The `detail` of a delivery's event (`received` or `duplicate_delivery`): its webhook id.
fn delivery_detail(webhook_id: &str) -> String {
    serde_json::json!({ "webhook_id": webhook_id }).to_string()
}

/// `($1, …, $width, tail), ($width+1, …, tail), …` for `rows` rows: `width` bound values
/// each, then `tail` (literal SQL, may be empty).
fn placeholders(rows: usize, width: usize, tail: &str) -> String {
    (0..rows)
        .map(|r| {
            let mut row: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            if !tail.is_empty() {
                row.push(tail.to_owned());
            }
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
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
    .bind(delivery_detail(&new.webhook_id))
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

    fn delivery<'a>(session: &'a str, webhook_id: &'a str) -> NewHandoff<'a> {
        NewHandoff {
            org_id: "acme",
            session_id: session,
            webhook_id,
            channel: "web",
            payload_version: crate::domain::QUEUED_PAYLOAD_VERSION,
            payload: format!("{{\"for\":\"{webhook_id}\"}}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_stores_each_new_session_once_and_records_the_rest_as_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::testing::store_with_acme(dir.path()).await;
        let before = store
            .intake(delivery("s-old", "msg_old"), 500)
            .await
            .unwrap();
        let Intake::Stored(old) = before else {
            panic!("s-old is new")
        };
        // 300 deliveries (more than ROWS_PER_INSERT, and than one batch) wait together:
        // 200 new sessions, each new one's first delivery ...
        let held = store.writer().acquire().await.unwrap();
        let mut deliveries = tokio::task::JoinSet::new();
        let plan: Vec<(String, String)> = (0..200)
            .map(|i| (format!("s-{i}"), format!("msg_{i}")))
            // ... a redelivery under a new id for 50 of them, a replay of the same id for 40 ...
            .chain((0..50).map(|i| (format!("s-{i}"), format!("msg_again_{i}"))))
            .chain((50..90).map(|i| (format!("s-{i}"), format!("msg_{i}"))))
            // ... and 10 for the session stored before.
            .chain((0..10).map(|i| ("s-old".to_owned(), format!("msg_old_{i}"))))
            .collect();
        for (n, (session, webhook_id)) in plan.into_iter().enumerate() {
            let store = store.clone();
            // The first delivery of each session queues first, so it is the one stored.
            store.writes.until_queued(n).await;
            deliveries.spawn(async move {
                let result = store.intake(delivery(&session, &webhook_id), 1_000).await;
                (session, webhook_id, result.unwrap())
            });
        }
        store.writes.until_queued(300).await;
        drop(held);
        let (mut stored, mut duplicates) = (std::collections::HashMap::new(), 0);
        while let Some(joined) = deliveries.join_next().await {
            match joined.unwrap() {
                (session, webhook_id, Intake::Stored(row)) => {
                    assert_eq!(
                        (row.session_id.as_str(), row.webhook_id.as_str()),
                        (session.as_str(), webhook_id.as_str())
                    );
                    assert_eq!(
                        webhook_id,
                        session.replace("s-", "msg_"),
                        "first one stored"
                    );
                    assert_eq!(
                        (row.state, row.attempts),
                        (crate::domain::HandoffState::Queued, 0)
                    );
                    // What the batch answered is what the store holds.
                    let held = store.handoff("acme", &session).await.unwrap().unwrap();
                    assert_eq!(format!("{held:?}"), format!("{row:?}"));
                    stored.insert(session, row.handoff_id);
                }
                (session, _, Intake::Duplicate(row)) => {
                    if session == "s-old" {
                        assert_eq!(row.handoff_id, old.handoff_id);
                    }
                    duplicates += 1;
                }
            }
        }
        assert_eq!((stored.len(), duplicates), (200, 100));
        let pool = store.pool().clone();
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM handoffs").await, 201);
        assert_eq!(
            count("SELECT COUNT(*) FROM handoff_events WHERE kind = 'received'").await,
            201
        );
        // A replay of a recorded delivery adds no event; a redelivery under a new id adds one.
        assert_eq!(
            count("SELECT COUNT(*) FROM handoff_events WHERE kind = 'duplicate_delivery'").await,
            60
        );
    }

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
