//! Handoff rows, their event timeline, leases, and the callback outbox.

use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{col, Backend, Store, StoreError};
use crate::catalog::Diagnosis;

/// Where a handoff is. `queued` → `processing` → `succeeded` | `failed` | `skipped`; a
/// transient error puts it back to `queued` with a later `next_attempt_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffState {
    Queued,
    Processing,
    Succeeded,
    Failed,
    Skipped,
}

impl HandoffState {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the handoff is finished for good.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }
}

/// How the visitor was matched to a Dynamics contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactMatch {
    /// Exactly one active contact has the verified email.
    Linked,
    /// None had it and the connection has `create_contact_if_missing`.
    Created,
    NotFound,
    /// Two or more active contacts have it; none is linked.
    Ambiguous,
    /// The visitor gave no email.
    Anonymous,
    /// The email is not verified, so it was not used.
    Unverified,
}

impl ContactMatch {
    pub const ALL: [Self; 6] = [
        Self::Linked,
        Self::Created,
        Self::NotFound,
        Self::Ambiguous,
        Self::Anonymous,
        Self::Unverified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Created => "created",
            Self::NotFound => "not_found",
            Self::Ambiguous => "ambiguous",
            Self::Anonymous => "anonymous",
            Self::Unverified => "unverified",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// One stored handoff.
#[derive(Debug, Clone)]
pub struct HandoffRow {
    pub handoff_id: String,
    pub org_id: String,
    pub session_id: String,
    pub webhook_id: String,
    pub channel: String,
    pub payload_version: i64,
    /// `data.session` as received (JSON), in the shape of `payload_version`.
    pub payload: String,
    pub state: HandoffState,
    pub contact_match: Option<ContactMatch>,
    pub contact_id: Option<String>,
    pub dynamics365_chat_id: Option<String>,
    pub workstream_id: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub first_attempt_at: Option<i64>,
    pub last_error: Option<Diagnosis>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the retention period removed the session from `payload` (see
    /// [`Store::redact_settled`]); `None` while it is kept.
    pub redacted_at: Option<i64>,
}

const HANDOFF_COLUMNS: &str =
    "handoff_id, org_id, session_id, webhook_id, channel, payload_version, \
     payload, state, contact_match, contact_id, dynamics365_chat_id, workstream_id, attempts, \
     next_attempt_at, first_attempt_at, last_error, created_at, updated_at, redacted_at";

impl HandoffRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let state: String = col(row, "state")?;
        let contact_match: Option<String> = col(row, "contact_match")?;
        let last_error: Option<String> = col(row, "last_error")?;
        Ok(Self {
            handoff_id: col(row, "handoff_id")?,
            org_id: col(row, "org_id")?,
            session_id: col(row, "session_id")?,
            webhook_id: col(row, "webhook_id")?,
            channel: col(row, "channel")?,
            payload_version: col(row, "payload_version")?,
            payload: col(row, "payload")?,
            state: HandoffState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown handoff state '{state}'")))?,
            contact_match: match contact_match {
                None => None,
                Some(m) => {
                    Some(ContactMatch::parse(&m).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown contact match '{m}'"))
                    })?)
                }
            },
            contact_id: col(row, "contact_id")?,
            dynamics365_chat_id: col(row, "dynamics365_chat_id")?,
            workstream_id: col(row, "workstream_id")?,
            attempts: col(row, "attempts")?,
            next_attempt_at: col(row, "next_attempt_at")?,
            first_attempt_at: col(row, "first_attempt_at")?,
            last_error: match last_error {
                None => None,
                Some(text) => Some(
                    serde_json::from_str(&text)
                        .map_err(|e| StoreError::Corrupt(format!("last_error: {e}")))?,
                ),
            },
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
            redacted_at: col(row, "redacted_at")?,
        })
    }
}

/// One org's queue: handoffs `queued` or `processing`, and when the oldest queued one was
/// received (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub org_id: String,
    pub depth: i64,
    pub oldest_queued_at: Option<i64>,
}

/// A handoff in a list, with the error of a callback that was given up (`failed`), if any.
#[derive(Debug, Clone)]
pub struct ListedHandoff {
    pub handoff: HandoffRow,
    pub failed_callback: Option<String>,
}

/// One entry of a handoff's timeline: `{at, kind, detail}`.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub detail: Value,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: i64,
    pub kind: &'static str,
    pub detail: Value,
}

/// What the intake stores for a new handoff.
#[derive(Debug, Clone)]
pub struct NewHandoff<'a> {
    pub org_id: &'a str,
    pub session_id: &'a str,
    pub webhook_id: &'a str,
    pub channel: &'a str,
    pub payload: String,
}

/// The result of storing a webhook delivery.
#[derive(Debug)]
pub enum Intake {
    /// A new handoff, committed and queued.
    Stored(HandoffRow),
    /// The session already had a handoff; nothing new was queued.
    Duplicate(HandoffRow),
}

/// A handoff claimed by a worker until `lease_until`. Writes that finish it only apply while
/// the lease is still this one.
#[derive(Debug, Clone)]
pub struct Claim {
    pub handoff: HandoffRow,
    pub lease_id: String,
}

/// A callback event to deliver after the handoff's transaction commits (outbox).
#[derive(Debug, Clone)]
pub struct NewCallback {
    /// Deterministic Standard Webhooks `webhook-id` (`msg_…`), the outbox key.
    pub webhook_id: String,
    pub event_type: &'static str,
    pub payload: String,
}

/// How an attempt ended, written in one transaction with its events (and callback).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: HandoffState,
    pub contact_match: Option<ContactMatch>,
    pub contact_id: Option<String>,
    pub dynamics365_chat_id: Option<String>,
    pub workstream_id: Option<String>,
    /// For `queued`: when to try again.
    pub next_attempt_at: Option<i64>,
    pub error: Option<Diagnosis>,
    pub events: Vec<NewEvent>,
    pub callback: Option<NewCallback>,
}

/// A stored callback delivery.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRow {
    pub webhook_id: String,
    pub handoff_id: String,
    pub org_id: String,
    pub event_type: String,
    #[serde(skip)]
    pub payload: String,
    /// `pending` | `delivered` | `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
    /// Start of the current retry window: creation, or the last replay.
    pub window_started_at: i64,
}

const CALLBACK_COLUMNS: &str =
    "webhook_id, handoff_id, org_id, event_type, payload, state, attempts, \
     next_attempt_at, last_error, delivered_at, created_at, \
     COALESCE(window_started_at, created_at) AS window_started_at";

impl CallbackRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            webhook_id: col(row, "webhook_id")?,
            handoff_id: col(row, "handoff_id")?,
            org_id: col(row, "org_id")?,
            event_type: col(row, "event_type")?,
            payload: col(row, "payload")?,
            state: col(row, "state")?,
            attempts: col(row, "attempts")?,
            next_attempt_at: col(row, "next_attempt_at")?,
            last_error: col(row, "last_error")?,
            delivered_at: col(row, "delivered_at")?,
            created_at: col(row, "created_at")?,
            window_started_at: col(row, "window_started_at")?,
        })
    }
}

/// What a replay re-queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    pub handoffs: u64,
    pub callbacks: u64,
}

/// `AND org_id NOT IN ($first, …)` for `count` bound org ids (empty for none).
fn not_in_orgs(first: usize, count: usize) -> String {
    if count == 0 {
        return String::new();
    }
    let params: Vec<String> = (first..first + count).map(|i| format!("${i}")).collect();
    format!("AND org_id NOT IN ({})", params.join(", "))
}

/// `duplicate_delivery` events kept per handoff at most: enough to see a sender retrying,
/// bounded against one that replays for ever.
pub const MAX_DUPLICATE_EVENTS: i64 = 20;

async fn insert_event<'c, E>(
    executor: E,
    handoff_id: &str,
    event: &NewEvent,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO handoff_events (handoff_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(handoff_id)
    .bind(event.at)
    .bind(event.kind)
    .bind(event.detail.to_string())
    .execute(executor)
    .await?;
    Ok(())
}

fn diagnosis_json(d: &Option<Diagnosis>) -> Option<String> {
    d.as_ref()
        .map(|d| serde_json::to_string(d).expect("a diagnosis serializes"))
}

impl Store {
    /// The row-lock clause of a claim's subquery: on Postgres, concurrent claimers skip rows
    /// another transaction is claiming; SQLite serialises writers, so it needs none.
    fn skip_locked(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }

    /// Runs a claim statement whose parameters are `$1` the lease id, `$2` the lease's end,
    /// `$3` now, then one per busy org (see [`not_in_orgs`]).
    async fn claim_row(
        &self,
        sql: &str,
        lease_id: &str,
        lease_until: i64,
        now: i64,
        busy_orgs: &[String],
    ) -> Result<Option<AnyRow>, StoreError> {
        let mut query = sqlx::query(sql).bind(lease_id).bind(lease_until).bind(now);
        for org in busy_orgs {
            query = query.bind(org);
        }
        Ok(query.fetch_optional(self.pool()).await?)
    }

    /// Stores a webhook delivery: a new handoff, or, when the session already has one, a
    /// `duplicate_delivery` event on it. Returns only after the transaction committed.
    pub async fn intake(&self, new: NewHandoff<'_>, now: i64) -> Result<Intake, StoreError> {
        let mut tx = self.pool().begin().await?;
        // The write comes first so SQLite takes its write lock at once (no read→write upgrade).
        let inserted = sqlx::query(
            "INSERT INTO handoffs (handoff_id, org_id, session_id, webhook_id, channel, payload_version, \
             payload, state, attempts, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, 'queued', 0, $7, $7, $7) \
             ON CONFLICT (org_id, session_id) DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(new.org_id)
        .bind(new.session_id)
        .bind(new.webhook_id)
        .bind(new.channel)
        .bind(&new.payload)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(&format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE org_id = $1 AND session_id = $2"
        ))
        .bind(new.org_id)
        .bind(new.session_id)
        .fetch_one(&mut *tx)
        .await?;
        let handoff = HandoffRow::from_row(&row)?;
        // A replay of a delivery already recorded adds nothing; other redeliveries add one
        // event each, up to MAX_DUPLICATE_EVENTS per handoff.
        let kind = if inserted {
            "received"
        } else {
            "duplicate_delivery"
        };
        sqlx::query(
            "INSERT INTO handoff_events (handoff_id, at, kind, detail, webhook_id) \
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS ( \
               SELECT 1 FROM handoff_events WHERE handoff_id = $1 AND webhook_id = $5) \
             AND (SELECT COUNT(*) FROM handoff_events WHERE handoff_id = $1 AND kind = 'duplicate_delivery') < $6",
        )
        .bind(&handoff.handoff_id)
        .bind(now)
        .bind(kind)
        .bind(serde_json::json!({ "webhook_id": new.webhook_id }).to_string())
        .bind(new.webhook_id)
        .bind(MAX_DUPLICATE_EVENTS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(if inserted {
            Intake::Stored(handoff)
        } else {
            Intake::Duplicate(handoff)
        })
    }

    /// The handoff of one session.
    pub async fn handoff(
        &self,
        org_id: &str,
        session_id: &str,
    ) -> Result<Option<HandoffRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {HANDOFF_COLUMNS} FROM handoffs WHERE org_id = $1 AND session_id = $2"
        ))
        .bind(org_id)
        .bind(session_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(HandoffRow::from_row).transpose()
    }

    /// Recent handoffs of an org, newest first, optionally in one state and with a session id
    /// containing `session` (plain text, not a pattern); at most `limit`.
    pub async fn recent_handoffs(
        &self,
        org_id: &str,
        state: Option<HandoffState>,
        session: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ListedHandoff>, StoreError> {
        let pattern = session
            .filter(|s| !s.is_empty())
            .map(|s| {
                format!(
                    "%{}%",
                    s.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                )
            })
            .unwrap_or_default();
        let rows = sqlx::query(&format!(
            "SELECT {HANDOFF_COLUMNS}, (SELECT c.last_error FROM callbacks c \
             WHERE c.handoff_id = handoffs.handoff_id AND c.state = 'failed' \
             ORDER BY c.created_at DESC LIMIT 1) AS failed_callback \
             FROM handoffs WHERE org_id = $1 AND ($2 = '' OR state = $2) \
             AND ($4 = '' OR session_id LIKE $4 ESCAPE '\\') \
             ORDER BY created_at DESC, handoff_id DESC LIMIT $3"
        ))
        .bind(org_id)
        .bind(state.map(HandoffState::as_str).unwrap_or(""))
        .bind(limit)
        .bind(pattern)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ListedHandoff {
                    handoff: HandoffRow::from_row(row)?,
                    failed_callback: col(row, "failed_callback")?,
                })
            })
            .collect()
    }

    /// How many handoffs of an org were created since `since`, by state.
    pub async fn counts_since(
        &self,
        org_id: &str,
        since: i64,
    ) -> Result<Vec<(HandoffState, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM handoffs WHERE org_id = $1 AND created_at >= $2 GROUP BY state",
        )
        .bind(org_id)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let state: String = col(row, "state")?;
                let state = HandoffState::parse(&state).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown handoff state '{state}'"))
                })?;
                Ok((state, col(row, "n")?))
            })
            .collect()
    }

    /// Handoffs of an org waiting or running (`queued` or `processing`), and when the oldest
    /// queued one was received.
    pub async fn queue_depth(&self, org_id: &str) -> Result<(i64, Option<i64>), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS depth, MIN(CASE WHEN state = 'queued' THEN created_at END) AS oldest \
             FROM handoffs WHERE org_id = $1 AND state IN ('queued', 'processing')",
        )
        .bind(org_id)
        .fetch_one(self.pool())
        .await?;
        Ok((col(&row, "depth")?, col(&row, "oldest")?))
    }

    /// Every org's queue (handoffs `queued` or `processing`, and when the oldest queued one
    /// was received), orgs with an empty queue included, in one query.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.org_id AS org_id, COUNT(h.handoff_id) AS depth, \
             MIN(CASE WHEN h.state = 'queued' THEN h.created_at END) AS oldest \
             FROM orgs o LEFT JOIN handoffs h ON h.org_id = o.org_id AND h.state IN ('queued', 'processing') \
             GROUP BY o.org_id ORDER BY o.org_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(QueueDepth {
                    org_id: col(row, "org_id")?,
                    depth: col(row, "depth")?,
                    oldest_queued_at: col(row, "oldest")?,
                })
            })
            .collect()
    }

    /// The timeline of a handoff, oldest first.
    pub async fn events(&self, handoff_id: &str) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, detail FROM handoff_events WHERE handoff_id = $1 ORDER BY event_id",
        )
        .bind(handoff_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = col(row, "detail")?;
                Ok(EventRow {
                    at: col(row, "at")?,
                    kind: col(row, "kind")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt(format!("event detail: {e}")))?,
                })
            })
            .collect()
    }

    /// Claims the handoff that has waited longest among those due (queued and past
    /// `next_attempt_at`, or processing with an expired lease) of an org not in
    /// `busy_orgs`, in one atomic statement: no lock is held afterwards, only the lease.
    /// The worker passes the orgs that already use their share of its slots.
    pub async fn claim_handoff(
        &self,
        now: i64,
        lease_ms: i64,
        busy_orgs: &[String],
    ) -> Result<Option<Claim>, StoreError> {
        let lock = self.skip_locked();
        let lease_id = Uuid::new_v4().to_string();
        let not_busy = not_in_orgs(4, busy_orgs.len());
        let sql = format!(
            "UPDATE handoffs SET state = 'processing', lease_id = $1, lease_until = $2, \
             attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, $3), updated_at = $3 \
             WHERE handoff_id = (SELECT handoff_id FROM handoffs \
               WHERE ((state = 'queued' AND next_attempt_at <= $3) OR (state = 'processing' AND lease_until < $3)) \
               {not_busy} ORDER BY next_attempt_at, created_at LIMIT 1 {lock}) \
             RETURNING {HANDOFF_COLUMNS}"
        );
        let row = self
            .claim_row(&sql, &lease_id, now + lease_ms, now, busy_orgs)
            .await?;
        Ok(match row {
            Some(row) => Some(Claim {
                handoff: HandoffRow::from_row(&row)?,
                lease_id,
            }),
            None => None,
        })
    }

    /// Writes the outcome of a claimed attempt, its events and its callback in one
    /// transaction. Returns `false` (and writes nothing) if the lease was lost meanwhile.
    pub async fn finish_handoff(
        &self,
        claim: &Claim,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE handoffs SET state = $1, contact_match = $2, contact_id = $3, \
             dynamics365_chat_id = COALESCE($4, dynamics365_chat_id), workstream_id = COALESCE($5, workstream_id), \
             next_attempt_at = COALESCE($6, next_attempt_at), last_error = $7, \
             lease_id = NULL, lease_until = NULL, updated_at = $8 \
             WHERE handoff_id = $9 AND lease_id = $10",
        )
        .bind(outcome.state.as_str())
        .bind(outcome.contact_match.map(ContactMatch::as_str))
        .bind(outcome.contact_id.as_deref())
        .bind(outcome.dynamics365_chat_id.as_deref())
        .bind(outcome.workstream_id.as_deref())
        .bind(outcome.next_attempt_at)
        .bind(diagnosis_json(&outcome.error))
        .bind(now)
        .bind(&claim.handoff.handoff_id)
        .bind(&claim.lease_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for event in &outcome.events {
            insert_event(&mut *tx, &claim.handoff.handoff_id, event).await?;
        }
        if let Some(cb) = &outcome.callback {
            sqlx::query(
                "INSERT INTO callbacks (webhook_id, handoff_id, org_id, event_type, payload, state, attempts, \
                 next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6) \
                 ON CONFLICT (webhook_id) DO NOTHING",
            )
            .bind(&cb.webhook_id)
            .bind(&claim.handoff.handoff_id)
            .bind(&claim.handoff.org_id)
            .bind(cb.event_type)
            .bind(&cb.payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
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

    /// Claims a due callback delivery (pending and past `next_attempt_at`, or with an
    /// expired lease).
    pub async fn claim_callback(
        &self,
        now: i64,
        lease_ms: i64,
        busy_orgs: &[String],
    ) -> Result<Option<(CallbackRow, String)>, StoreError> {
        let lock = self.skip_locked();
        let lease_id = Uuid::new_v4().to_string();
        let not_busy = not_in_orgs(4, busy_orgs.len());
        let sql = format!(
            "UPDATE callbacks SET lease_id = $1, lease_until = $2, attempts = attempts + 1, \
             next_attempt_at = $2, updated_at = $3 \
             WHERE webhook_id = (SELECT webhook_id FROM callbacks \
               WHERE state = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
               {not_busy} ORDER BY next_attempt_at LIMIT 1 {lock}) \
             RETURNING {CALLBACK_COLUMNS}"
        );
        let row = self
            .claim_row(&sql, &lease_id, now + lease_ms, now, busy_orgs)
            .await?;
        row.as_ref()
            .map(|r| CallbackRow::from_row(r).map(|cb| (cb, lease_id)))
            .transpose()
    }

    /// Records a callback attempt: `delivered`, `failed` for good, or `pending` again at
    /// `next_attempt_at`; the handoff's timeline gets `event`. Fenced by the lease.
    pub async fn finish_callback(
        &self,
        callback: &CallbackRow,
        lease_id: &str,
        state: &str,
        next_attempt_at: i64,
        last_error: Option<&str>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE callbacks SET state = $1, next_attempt_at = $2, last_error = $3, \
             delivered_at = CASE WHEN $1 = 'delivered' THEN $4 ELSE delivered_at END, \
             lease_id = NULL, lease_until = NULL, updated_at = $4 \
             WHERE webhook_id = $5 AND lease_id = $6",
        )
        .bind(state)
        .bind(next_attempt_at)
        .bind(last_error)
        .bind(event.at)
        .bind(&callback.webhook_id)
        .bind(lease_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut *tx, &callback.handoff_id, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Re-queues failed work: failed handoffs (due now, with a new retry window) and failed
    /// callbacks, of one handoff (`handoff_id`) or of a whole org. Each re-queued handoff gets
    /// a `replayed` event. The deterministic keys make a replay unable to duplicate anything.
    pub async fn replay_failed(
        &self,
        org_id: &str,
        handoff_id: Option<&str>,
        now: i64,
    ) -> Result<Replayed, StoreError> {
        let mut tx = self.pool().begin().await?;
        let scope = "org_id = $2 AND ($3 = '' OR handoff_id = $3)";
        let handoffs = sqlx::query(&format!(
            "UPDATE handoffs SET state = 'queued', next_attempt_at = $1, first_attempt_at = NULL, \
             lease_id = NULL, lease_until = NULL, updated_at = $1 WHERE state = 'failed' AND redacted_at IS NULL \
             AND {scope} RETURNING handoff_id"
        ))
        .bind(now)
        .bind(org_id)
        .bind(handoff_id.unwrap_or(""))
        .fetch_all(&mut *tx)
        .await?;
        for row in &handoffs {
            let id: String = col(row, "handoff_id")?;
            let event = NewEvent {
                at: now,
                kind: "replayed",
                detail: serde_json::json!({}),
            };
            insert_event(&mut *tx, &id, &event).await?;
        }
        let callbacks = sqlx::query(&format!(
            "UPDATE callbacks SET state = 'pending', next_attempt_at = $1, window_started_at = $1, \
             lease_id = NULL, lease_until = NULL, updated_at = $1 WHERE state = 'failed' AND {scope}"
        ))
        .bind(now)
        .bind(org_id)
        .bind(handoff_id.unwrap_or(""))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Replayed {
            handoffs: handoffs.len() as u64,
            callbacks,
        })
    }

    /// Gives a claimed handoff back to the queue, due now (a worker shutting down before the
    /// attempt finished). Only while the lease is still `lease_id`.
    pub async fn release_handoff(
        &self,
        handoff_id: &str,
        lease_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let released = sqlx::query(
            "UPDATE handoffs SET state = 'queued', next_attempt_at = $1, lease_id = NULL, lease_until = NULL, \
             updated_at = $1 WHERE handoff_id = $2 AND lease_id = $3",
        )
        .bind(now)
        .bind(handoff_id)
        .bind(lease_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if released {
            let event = NewEvent {
                at: now,
                kind: "released",
                detail: serde_json::json!({ "reason": "worker shutdown" }),
            };
            insert_event(&mut *tx, handoff_id, &event).await?;
        }
        tx.commit().await?;
        Ok(released)
    }

    /// Gives a claimed callback back, due now. Only while the lease is still `lease_id`.
    pub async fn release_callback(
        &self,
        webhook_id: &str,
        lease_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let released = sqlx::query(
            "UPDATE callbacks SET next_attempt_at = $1, lease_id = NULL, lease_until = NULL, updated_at = $1 \
             WHERE webhook_id = $2 AND lease_id = $3",
        )
        .bind(now)
        .bind(webhook_id)
        .bind(lease_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(released == 1)
    }

    /// The callback deliveries of a handoff, oldest first.
    pub async fn callbacks(&self, handoff_id: &str) -> Result<Vec<CallbackRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE handoff_id = $1 ORDER BY created_at"
        ))
        .bind(handoff_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(CallbackRow::from_row).collect()
    }
}
