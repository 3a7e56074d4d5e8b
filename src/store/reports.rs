//! Read-only queries for the troubleshooting views and metrics: recent handoffs, counts by
//! state, queue depths.

use super::handoffs::{HandoffRow, HANDOFF_COLUMNS};
use super::{col, Store, StoreError};
use crate::domain::HandoffState;

/// One org's queue: handoffs `queued` or `processing`, and when the oldest queued one was
/// received (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub org_id: String,
    pub depth: i64,
    pub oldest_queued_at: Option<i64>,
}

/// A handoff in a list, with its newest outbox row in trouble, if any.
#[derive(Debug, Clone)]
pub struct ListedHandoff {
    pub handoff: HandoffRow,
    pub callback_trouble: Option<CallbackTrouble>,
}

/// An outbox row (a callback, or the write-back to the OpenCX session) that was given up
/// (`failed`), or that is still `pending` after a refused delivery (retrying): its
/// `event_type`, last error and attempts so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackTrouble {
    pub event_type: String,
    pub error: String,
    pub attempts: i64,
    /// `failed`: nothing retries it; otherwise it is retried with backoff.
    pub given_up: bool,
}

/// Which outbox rows are in trouble (SQL, over `callbacks c`), newest first.
const TROUBLE: &str = "c.handoff_id = handoffs.handoff_id AND (c.state = 'failed' \
     OR (c.state = 'pending' AND c.last_error IS NOT NULL)) \
     ORDER BY c.created_at DESC, c.webhook_id DESC LIMIT 1";

impl Store {
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
            "SELECT {HANDOFF_COLUMNS}, \
             (SELECT c.last_error FROM callbacks c WHERE {TROUBLE}) AS trouble_error, \
             (SELECT c.event_type FROM callbacks c WHERE {TROUBLE}) AS trouble_event_type, \
             (SELECT c.attempts FROM callbacks c WHERE {TROUBLE}) AS trouble_attempts, \
             (SELECT c.state FROM callbacks c WHERE {TROUBLE}) AS trouble_state \
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
                let error: Option<String> = col(row, "trouble_error")?;
                let event_type: Option<String> = col(row, "trouble_event_type")?;
                let attempts: Option<i64> = col(row, "trouble_attempts")?;
                let state: Option<String> = col(row, "trouble_state")?;
                Ok(ListedHandoff {
                    handoff: HandoffRow::from_row(row)?,
                    callback_trouble: error.zip(event_type).map(|(error, event_type)| {
                        CallbackTrouble {
                            event_type,
                            error,
                            attempts: attempts.unwrap_or(0),
                            given_up: state.as_deref() == Some("failed"),
                        }
                    }),
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
}
