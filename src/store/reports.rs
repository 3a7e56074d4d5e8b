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

/// A handoff in a list, with the callback that was given up (`failed`) last, if any.
#[derive(Debug, Clone)]
pub struct ListedHandoff {
    pub handoff: HandoffRow,
    pub failed_callback: Option<FailedCallback>,
}

/// An outbox row that was given up: its `event_type` and last error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCallback {
    pub event_type: String,
    pub error: String,
}

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
            "SELECT {HANDOFF_COLUMNS}, (SELECT c.last_error FROM callbacks c \
             WHERE c.handoff_id = handoffs.handoff_id AND c.state = 'failed' \
             ORDER BY c.created_at DESC LIMIT 1) AS failed_callback, \
             (SELECT c.event_type FROM callbacks c \
             WHERE c.handoff_id = handoffs.handoff_id AND c.state = 'failed' \
             ORDER BY c.created_at DESC LIMIT 1) AS failed_event_type \
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
                let error: Option<String> = col(row, "failed_callback")?;
                let event_type: Option<String> = col(row, "failed_event_type")?;
                Ok(ListedHandoff {
                    handoff: HandoffRow::from_row(row)?,
                    failed_callback: error
                        .zip(event_type)
                        .map(|(error, event_type)| FailedCallback { event_type, error }),
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
