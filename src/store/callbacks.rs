//! The callback outbox: `callbacks`, written with a handoff's outcome and delivered from
//! the leased queue.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::events::insert_event;
use super::group::{pending, Write};
use super::queue::{Claims, Lease, Queue};
use super::{col, Store, StoreError};
use crate::domain::NewEvent;

/// Where a callback delivery is: `pending` (due at `next_attempt_at`), `delivered`, or
/// `failed` (given up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackState {
    Pending,
    Delivered,
    Failed,
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        match raw {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Corrupt(format!(
                "unknown callback state '{other}'"
            ))),
        }
    }
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
    pub state: CallbackState,
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
            state: CallbackState::parse(&col::<String>(row, "state")?)?,
            attempts: col(row, "attempts")?,
            next_attempt_at: col(row, "next_attempt_at")?,
            last_error: col(row, "last_error")?,
            delivered_at: col(row, "delivered_at")?,
            created_at: col(row, "created_at")?,
            window_started_at: col(row, "window_started_at")?,
        })
    }
}

impl Claims<'_> {
    /// Claims a due callback delivery (pending and past `next_attempt_at`, or with an
    /// expired lease) of an org not in `busy_orgs`.
    pub async fn callback(
        &mut self,
        busy_orgs: &[String],
    ) -> Result<Option<(CallbackRow, Lease)>, StoreError> {
        let Some((row, lease)) = self
            .claim(Queue::Callbacks, CALLBACK_COLUMNS, busy_orgs)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((CallbackRow::from_row(&row)?, lease)))
    }
}

impl Store {
    /// Records a callback attempt: `delivered`, `failed` for good, or `pending` again at
    /// `next_attempt_at`; the handoff's timeline gets `event`. Fenced by the lease; shares
    /// its transaction with other writes waiting at that moment (`group.rs`).
    pub async fn finish_callback(
        &self,
        callback: &CallbackRow,
        lease: &Lease,
        state: CallbackState,
        next_attempt_at: i64,
        last_error: Option<&str>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let finished = CallbackOutcome {
            webhook_id: callback.webhook_id.clone(),
            handoff_id: callback.handoff_id.clone(),
            lease_id: lease.id.clone(),
            state,
            next_attempt_at,
            last_error: last_error.map(str::to_owned),
            event: event.clone(),
        };
        self.group_write(pending(finished, Write::CallbackOutcome))
            .await
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

/// A callback attempt's outcome, owned so it can wait in the write queue.
pub(super) struct CallbackOutcome {
    webhook_id: String,
    handoff_id: String,
    lease_id: String,
    state: CallbackState,
    next_attempt_at: i64,
    last_error: Option<String>,
    event: NewEvent,
}

/// Writes `finished` inside the caller's transaction, fenced by its lease: `false` (and
/// nothing written) when the lease was lost.
pub(super) async fn write_callback_outcome(
    conn: &mut AnyConnection,
    finished: &CallbackOutcome,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE callbacks SET state = $1, next_attempt_at = $2, last_error = $3, \
         delivered_at = CASE WHEN $1 = 'delivered' THEN $4 ELSE delivered_at END, \
         lease_id = NULL, lease_until = NULL, updated_at = $4 \
         WHERE webhook_id = $5 AND lease_id = $6",
    )
    .bind(finished.state.as_str())
    .bind(finished.next_attempt_at)
    .bind(finished.last_error.as_deref())
    .bind(finished.event.at)
    .bind(&finished.webhook_id)
    .bind(&finished.lease_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    insert_event(conn, &finished.handoff_id, &finished.event).await?;
    Ok(true)
}
