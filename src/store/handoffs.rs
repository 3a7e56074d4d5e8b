//! Handoff rows: what intake stores (`intake.rs` writes it), the claim and the fenced
//! outcome of an attempt.

use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::events::insert_events;
use super::group::{pending, Write};
use super::queue::{Claims, Lease, Queue};
use super::{col, Store, StoreError};
use crate::domain::catalog::Diagnosis;
use crate::domain::{ContactMatch, HandoffState};
use crate::domain::{Ended, Outcome, QUEUED_PAYLOAD_VERSION};

/// One stored handoff.
#[derive(Debug, Clone)]
pub struct HandoffRow {
    pub handoff_id: String,
    pub org_id: String,
    pub session_id: String,
    pub webhook_id: String,
    pub channel: String,
    pub payload_version: i64,
    /// The queued request (JSON) in the shape of `payload_version`: version 2 is the
    /// bridge's `QueuedHandoff`.
    pub payload: String,
    pub state: HandoffState,
    pub contact_match: Option<ContactMatch>,
    pub contact_id: Option<String>,
    pub dynamics365_chat_id: Option<String>,
    pub workstream_id: Option<String>,
    /// The incident a non-chat session became, and its case number.
    pub dynamics365_incident_id: Option<String>,
    pub dynamics365_ticket_number: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub first_attempt_at: Option<i64>,
    pub last_error: Option<Diagnosis>,
    pub created_at: i64,
    /// When the widget backend was told the handoff is delayed (`handoff.delayed`).
    pub delayed_at: Option<i64>,
    pub updated_at: i64,
    /// When the retention period removed the session from `payload` (see
    /// [`Store::redact_settled`]); `None` while it is kept.
    pub redacted_at: Option<i64>,
}

pub(super) const HANDOFF_COLUMNS: &str =
    "handoff_id, org_id, session_id, webhook_id, channel, payload_version, \
     payload, state, contact_match, contact_id, dynamics365_chat_id, workstream_id, \
     dynamics365_incident_id, dynamics365_ticket_number, attempts, \
     next_attempt_at, first_attempt_at, last_error, created_at, updated_at, redacted_at, delayed_at";

impl HandoffRow {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
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
            dynamics365_incident_id: col(row, "dynamics365_incident_id")?,
            dynamics365_ticket_number: col(row, "dynamics365_ticket_number")?,
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
            delayed_at: col(row, "delayed_at")?,
            updated_at: col(row, "updated_at")?,
            redacted_at: col(row, "redacted_at")?,
        })
    }
}

/// What the intake stores for a new handoff.
#[derive(Debug, Clone)]
pub struct NewHandoff<'a> {
    pub org_id: &'a str,
    pub session_id: &'a str,
    pub webhook_id: &'a str,
    pub channel: &'a str,
    /// The shape of `payload` (`domain::QUEUED_PAYLOAD_VERSION` for new handoffs).
    pub payload_version: i64,
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

/// A handoff claimed by a worker. Writes that finish it only apply while the lease is
/// still this one.
#[derive(Debug, Clone)]
pub struct Claim {
    pub handoff: HandoffRow,
    pub lease: Lease,
}

/// `duplicate_delivery` events kept per handoff at most: enough to see a sender retrying,
/// bounded against one that replays for ever.
pub const MAX_DUPLICATE_EVENTS: i64 = 20;

fn diagnosis_json(d: Option<&Diagnosis>) -> Option<String> {
    d.map(|d| serde_json::to_string(d).expect("a diagnosis serializes"))
}

impl Claims<'_> {
    /// Claims the handoff that has waited longest among those due (queued and past
    /// `next_attempt_at`, or processing with an expired lease) of an org not in
    /// `busy_orgs`, in one atomic statement: no lock is held afterwards, only the lease.
    /// The worker passes the orgs that already use their share of its slots.
    pub async fn handoff(&mut self, busy_orgs: &[String]) -> Result<Option<Claim>, StoreError> {
        let Some((row, lease)) = self
            .claim(Queue::Handoffs, HANDOFF_COLUMNS, busy_orgs)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Claim {
            handoff: HandoffRow::from_row(&row)?,
            lease,
        }))
    }
}

impl Store {
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

    /// Claims one handoff on its own (see [`Claims::handoff`]) and commits.
    pub async fn claim_handoff(
        &self,
        now: i64,
        lease_ms: i64,
        busy_orgs: &[String],
    ) -> Result<Option<Claim>, StoreError> {
        let mut claims = self.begin_claims(now, lease_ms).await?;
        let claim = claims.handoff(busy_orgs).await?;
        claims.commit().await?;
        Ok(claim)
    }

    /// Writes the outcome of a claimed attempt, its events and its callback in one
    /// transaction (shared with other writes waiting at that moment: `group.rs`). Returns
    /// `false` (and writes nothing) if the lease was lost meanwhile.
    pub async fn finish_handoff(
        &self,
        claim: &Claim,
        outcome: &Outcome,
        now: i64,
    ) -> Result<bool, StoreError> {
        let finished = HandoffOutcome {
            handoff_id: claim.handoff.handoff_id.clone(),
            org_id: claim.handoff.org_id.clone(),
            lease_id: claim.lease.id.clone(),
            outcome: outcome.clone(),
            now,
        };
        self.group_write(pending(finished, Write::HandoffOutcome))
            .await
    }
}

/// What an outcome tells about the org's connection, written on its row in the outcome's
/// transaction: a handoff that reached Dynamics (`last_success_at`, and the connection is no
/// longer failing), or one that failed for good for a reason of the connection
/// (`catalog::is_connection_level`: `last_failure`, and `failing_since` unless already
/// failing). Anything else changes nothing.
async fn record_on_connection(
    conn: &mut AnyConnection,
    org_id: &str,
    ended: &Ended,
    now: i64,
) -> Result<(), StoreError> {
    match ended {
        Ended::Succeeded { .. } | Ended::IncidentCreated { .. } => {
            sqlx::query(
                "UPDATE connections SET last_success_at = $1, failing_since = NULL WHERE org_id = $2",
            )
            .bind(now)
            .bind(org_id)
            .execute(&mut *conn)
            .await?;
        }
        Ended::Failed(diag) if crate::domain::catalog::is_connection_level(&diag.code) => {
            sqlx::query(
                "UPDATE connections SET last_failure_at = $1, last_failure = $2, \
                 failing_since = COALESCE(failing_since, $1) WHERE org_id = $3",
            )
            .bind(now)
            .bind(diagnosis_json(Some(diag)))
            .bind(org_id)
            .execute(&mut *conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The outcome of a claimed attempt, owned so it can wait in the write queue.
pub(super) struct HandoffOutcome {
    handoff_id: String,
    org_id: String,
    lease_id: String,
    outcome: Outcome,
    now: i64,
}

/// Writes `finished` inside the caller's transaction, fenced by its lease: `false` (and
/// nothing written) when the lease was lost.
pub(super) async fn write_handoff_outcome(
    conn: &mut AnyConnection,
    finished: &HandoffOutcome,
) -> Result<bool, StoreError> {
    let HandoffOutcome {
        handoff_id,
        org_id,
        lease_id,
        outcome,
        now,
    } = finished;
    // A wait was not an attempt: the claim's count is taken back.
    let uncount = i64::from(matches!(outcome.ended, Ended::Waiting { .. }));
    let (chat_id, workstream_id, next_attempt_at) = match &outcome.ended {
        Ended::Succeeded {
            dynamics365_chat_id,
            workstream_id,
        } => (
            Some(dynamics365_chat_id.hyphenated().to_string()),
            Some(workstream_id.hyphenated().to_string()),
            None,
        ),
        Ended::RetryScheduled {
            next_attempt_at, ..
        } => (None, None, Some(*next_attempt_at)),
        Ended::Waiting { until, .. } => (None, None, Some(*until)),
        Ended::IncidentCreated { .. } | Ended::Skipped(_) | Ended::Failed(_) => (None, None, None),
    };
    let (incident_id, ticket_number) = match &outcome.ended {
        Ended::IncidentCreated {
            dynamics365_incident_id,
            dynamics365_ticket_number,
        } => (
            Some(dynamics365_incident_id.hyphenated().to_string()),
            dynamics365_ticket_number.clone(),
        ),
        _ => (None, None),
    };
    let updated = sqlx::query(
        "UPDATE handoffs SET state = $1, contact_match = $2, contact_id = $3, \
         dynamics365_chat_id = COALESCE($4, dynamics365_chat_id), workstream_id = COALESCE($5, workstream_id), \
         next_attempt_at = COALESCE($6, next_attempt_at), last_error = $7, \
         lease_id = NULL, lease_until = NULL, updated_at = $8, attempts = attempts - $11, \
         delayed_at = COALESCE(delayed_at, $12), payload = COALESCE($13, payload), \
         payload_version = COALESCE($14, payload_version), channel = COALESCE($15, channel), \
         dynamics365_incident_id = COALESCE($16, dynamics365_incident_id), \
         dynamics365_ticket_number = COALESCE($17, dynamics365_ticket_number) \
         WHERE handoff_id = $9 AND lease_id = $10",
    )
    .bind(outcome.ended.state().as_str())
    .bind(outcome.contact_match.map(ContactMatch::as_str))
    .bind(outcome.contact_id.map(|id| id.hyphenated().to_string()))
    .bind(chat_id)
    .bind(workstream_id)
    .bind(next_attempt_at)
    .bind(diagnosis_json(outcome.ended.error()))
    .bind(*now)
    .bind(handoff_id)
    .bind(lease_id)
    .bind(uncount)
    .bind(outcome.delayed_at)
    .bind(outcome.enriched.as_ref().map(|e| e.payload.as_str()))
    .bind(outcome.enriched.as_ref().map(|_| QUEUED_PAYLOAD_VERSION))
    .bind(outcome.enriched.as_ref().map(|e| e.channel.as_str()))
    .bind(incident_id)
    .bind(ticket_number)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    insert_events(conn, handoff_id, &outcome.events).await?;
    record_on_connection(conn, org_id, &outcome.ended, *now).await?;
    for cb in outcome.callback.iter().chain(&outcome.write_back) {
        sqlx::query(
            "INSERT INTO callbacks (webhook_id, handoff_id, org_id, event_type, payload, state, attempts, \
             next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6) \
             ON CONFLICT (webhook_id) DO NOTHING",
        )
        .bind(&cb.webhook_id)
        .bind(handoff_id)
        .bind(org_id)
        .bind(cb.event_type)
        .bind(&cb.payload)
        .bind(*now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}
