//! Replay: failed handoffs and callbacks put back in their queues by an admin.

use serde::Serialize;

use super::events::insert_event;
use super::{col, Store, StoreError};
use crate::domain::EventKind;
use crate::domain::NewEvent;

/// What a replay re-queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    pub handoffs: u64,
    pub callbacks: u64,
}

impl Store {
    /// Re-queues failed work: failed handoffs (due now, with a new retry window, and the
    /// contact looked up again, since the admin may have fixed it), failed callbacks, and
    /// callbacks still retrying after a refused delivery (due now), of one handoff
    /// (`handoff_id`) or of a whole org. Each re-queued handoff gets
    /// a `replayed` event. The deterministic keys make a replay unable to duplicate anything.
    pub async fn replay_failed(
        &self,
        org_id: &str,
        handoff_id: Option<&str>,
        now: i64,
    ) -> Result<Replayed, StoreError> {
        let mut tx = self.writer().begin().await?;
        let scope = "org_id = $2 AND ($3 = '' OR handoff_id = $3)";
        let handoffs = scoped(&format!(
            "UPDATE handoffs SET state = 'queued', next_attempt_at = $1, first_attempt_at = NULL, \
             contact_match = NULL, contact_id = NULL, lease_id = NULL, lease_until = NULL, updated_at = $1 WHERE state = 'failed' AND redacted_at IS NULL \
             AND {scope} RETURNING handoff_id"
        ), now, org_id, handoff_id)
        .fetch_all(&mut *tx)
        .await?;
        for row in &handoffs {
            let id: String = col(row, "handoff_id")?;
            let event = NewEvent {
                at: now,
                kind: EventKind::Replayed,
                detail: serde_json::json!({}),
            };
            insert_event(&mut tx, &id, &event).await?;
        }
        let callbacks = scoped(&format!(
            "UPDATE callbacks SET state = 'pending', next_attempt_at = $1, window_started_at = $1, \
             lease_id = NULL, lease_until = NULL, updated_at = $1 WHERE state = 'failed' AND {scope}"
        ), now, org_id, handoff_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // A callback still retrying after a refused delivery is resent now, under its own
        // retry window.
        let resent = scoped(
            &format!(
            "UPDATE callbacks SET next_attempt_at = $1, updated_at = $1 WHERE state = 'pending' \
             AND last_error IS NOT NULL AND next_attempt_at > $1 AND {scope}"
        ),
            now,
            org_id,
            handoff_id,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let callbacks = callbacks + resent;
        tx.commit().await?;
        Ok(Replayed {
            handoffs: handoffs.len() as u64,
            callbacks,
        })
    }

    /// Makes queued handoffs due at `now`: those of one handoff (`handoff_id`) or of the
    /// whole org, when they wait for a later time (a backoff, or parked without a
    /// connection). Each gets a `woken` event saying `reason`. Returns how many.
    pub async fn wake_queued(
        &self,
        org_id: &str,
        handoff_id: Option<&str>,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let scope = "state = 'queued' AND next_attempt_at > $1 AND org_id = $2 \
                     AND ($3 = '' OR handoff_id = $3)";
        let mut tx = self.writer().begin().await?;
        scoped(
            &format!(
                "INSERT INTO handoff_events (handoff_id, at, kind, detail) \
             SELECT handoff_id, $1, $4, $5 FROM handoffs WHERE {scope}"
            ),
            now,
            org_id,
            handoff_id,
        )
        .bind(EventKind::Woken.as_str())
        .bind(serde_json::json!({ "reason": reason }).to_string())
        .execute(&mut *tx)
        .await?;
        let woken = scoped(
            &format!("UPDATE handoffs SET next_attempt_at = $1, updated_at = $1 WHERE {scope}"),
            now,
            org_id,
            handoff_id,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(woken)
    }
}

/// A statement over one handoff (`handoff_id`) or every handoff of an org, bound as `$1`
/// now, `$2` the org and `$3` the handoff (`''` for all of the org's).
fn scoped<'q>(
    sql: &'q str,
    now: i64,
    org_id: &'q str,
    handoff_id: Option<&'q str>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(now)
        .bind(org_id)
        .bind(handoff_id.unwrap_or(""))
}
