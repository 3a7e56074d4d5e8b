//! Retention: a settled handoff keeps the visitor's session (summary, contact details,
//! transcript) for the retention period, then the session is removed from `payload`. The
//! handoff's ids, state, outcome, errors, callbacks and timeline stay.

use std::time::Duration;

use super::{Store, StoreError};

/// Default retention of a settled handoff's session: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// What replaces a redacted session in `payload` (a JSON object, so readers that parse the
/// column still can).
pub const REDACTED_PAYLOAD: &str = r#"{"redacted":true}"#;

/// Rows redacted per statement, so one pass never holds a long write lock.
const BATCH: i64 = 500;

impl Store {
    /// Removes the session from every handoff that settled (succeeded, failed or skipped)
    /// before `settled_before` (Unix ms) and still has it; marks each with `redacted_at =
    /// now` and a `redacted` event. Returns how many were redacted.
    pub async fn redact_settled(&self, settled_before: i64, now: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut tx = self.pool().begin().await?;
            let rows = sqlx::query(
                "UPDATE handoffs SET payload = $1, redacted_at = $2 WHERE handoff_id IN ( \
                   SELECT handoff_id FROM handoffs WHERE redacted_at IS NULL \
                   AND state IN ('succeeded', 'failed', 'skipped') AND updated_at < $3 LIMIT $4) \
                 RETURNING handoff_id",
            )
            .bind(REDACTED_PAYLOAD)
            .bind(now)
            .bind(settled_before)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                let id: String = super::col(row, "handoff_id")?;
                sqlx::query(
                    "INSERT INTO handoff_events (handoff_id, at, kind, detail) VALUES ($1, $2, 'redacted', $3)",
                )
                .bind(id)
                .bind(now)
                .bind(r#"{"reason":"retention period ended"}"#)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            total += rows.len() as u64;
            if (rows.len() as i64) < BATCH {
                return Ok(total);
            }
        }
    }
}
