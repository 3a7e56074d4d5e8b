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
pub(super) async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    handoff_id: &str,
    event: &NewEvent,
) -> Result<(), StoreError> {
    insert_events(conn, handoff_id, std::slice::from_ref(event)).await
}

/// Rows per `INSERT` in [`insert_events`]: 4 parameters each, far below SQLite's 32,766
/// and PostgreSQL's 65,535 bound parameters per statement.
const EVENTS_PER_INSERT: usize = 100;

/// Appends `events` to `handoff_id`'s timeline inside the caller's transaction, in order,
/// with one `INSERT` per [`EVENTS_PER_INSERT`] events (an attempt's events cost one
/// statement, not one each).
pub(super) async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    handoff_id: &str,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 4 * i;
                format!("(${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4)
            })
            .collect();
        let sql = format!(
            "INSERT INTO handoff_events (handoff_id, at, kind, detail) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(handoff_id)
                .bind(event.at)
                .bind(event.kind.as_str())
                .bind(event.detail.to_string());
        }
        query.execute(&mut *conn).await?;
    }
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
