//! The handoff timeline: `handoff_events`, appended to in the same transactions that change
//! a handoff or its callbacks.

use serde::Serialize;
use serde_json::Value;

use super::{col, Store, StoreError};
use crate::domain::NewEvent;

/// One entry of a handoff's timeline: `{at, kind, detail}`.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub at: i64,
    pub kind: String,
    pub detail: Value,
}

/// Appends `event` to `handoff_id`'s timeline inside the caller's transaction.
pub(super) async fn insert_event<'c, E>(
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
    .bind(event.kind.as_str())
    .bind(event.detail.to_string())
    .execute(executor)
    .await?;
    Ok(())
}

impl Store {
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
}
