//! Retention: a settled handoff keeps the visitor's session (summary, contact details,
//! transcript) for the retention period, then the session is removed from `payload`. The
//! handoff's ids, state, outcome, errors, callbacks and timeline stay.
//!
//! On SQLite the connection runs with `secure_delete` and a pass ends with a WAL
//! checkpoint, so the removed text is overwritten in the database file and its write-ahead
//! log, not only unreachable. On PostgreSQL the old row versions are removed by (auto)vacuum;
//! backups taken before the redaction keep what they held.

use std::time::Duration;

use super::{Backend, Store, StoreError};
use crate::domain::EventKind;

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
            let mut tx = self.writer().begin().await?;
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
                    "INSERT INTO handoff_events (handoff_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(now)
                .bind(EventKind::Redacted.as_str())
                .bind(r#"{"reason":"retention period ended"}"#)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            total += rows.len() as u64;
            if (rows.len() as i64) < BATCH {
                break;
            }
        }
        if total > 0 && self.backend() == Backend::Sqlite {
            // With `secure_delete` the old text is zeroed in the database file; the
            // write-ahead log still holds copies of the pages until a checkpoint.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(self.writer())
                .await?;
        }
        Ok(total)
    }
}
