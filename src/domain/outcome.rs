//! How an attempt ended: the handoff's next state and what goes with it (the timeline
//! events it adds, the callback it queues). The job returns an [`Outcome`];
//! `Store::finish_handoff` writes it in one transaction.

use serde_json::Value;
use uuid::Uuid;

use super::handoff::{ContactMatch, EventKind, HandoffState};
use crate::domain::catalog::{self, Diagnosis, Failure};

/// An event to append to a handoff's timeline; `at` in Unix ms.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: i64,
    pub kind: EventKind,
    pub detail: Value,
}

/// A callback event to deliver after the handoff's transaction commits (outbox).
#[derive(Debug, Clone)]
pub struct NewCallback {
    /// Deterministic Standard Webhooks `webhook-id` (`msg_…`), the outbox key.
    pub webhook_id: String,
    pub event_type: &'static str,
    pub payload: String,
}

/// The outbox event type (`callbacks.event_type`) of the write-back that puts
/// `dynamics365_chat_id` on the OpenCX session (`POST /chat/sessions/{id}/send`).
pub const WRITE_BACK_EVENT: &str = "opencx.write_back";

/// The catalog entry of an outbox row of `event_type` that was given up: the write-back's
/// or the widget backend callback's.
pub fn outbox_failure(event_type: &str) -> Failure {
    if event_type == WRITE_BACK_EVENT {
        catalog::OPENCX_WRITE_BACK_FAILED
    } else {
        catalog::CALLBACK_FAILED
    }
}

/// A thin event's session, fetched from OpenCX: the payload (a `QueuedHandoff`, version 2)
/// and channel that replace the event's on the row, so no later attempt or replay needs
/// OpenCX again.
#[derive(Debug, Clone)]
pub struct Enrichment {
    pub payload: String,
    pub channel: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The live work item exists: its `activityid` (`dynamics365_chat_id`) and workstream.
    Succeeded {
        dynamics365_chat_id: Uuid,
        workstream_id: Uuid,
    },
    /// The incident of a non-chat session exists: its `incidentid` and case number
    /// (`ticketnumber`, read back on create; `None` only if Dataverse gave none).
    IncidentCreated {
        dynamics365_incident_id: Uuid,
        dynamics365_ticket_number: Option<String>,
    },
    /// Nothing to hand off (a non-chat channel with incidents turned off), with why.
    Skipped(Diagnosis),
    /// A transient failure: back to `queued` until `next_attempt_at` (Unix ms).
    RetryScheduled {
        next_attempt_at: i64,
        error: Diagnosis,
    },
    /// Nothing was sent: the attempt met a wait (an environment paused after a 429, the
    /// org not connected yet). Back to `queued` until `until` (Unix ms), and the claim is
    /// not counted as an attempt, so the backoff does not grow.
    Waiting { until: i64, reason: Diagnosis },
    /// A permanent failure, or transient ones past the retry window.
    Failed(Diagnosis),
}

impl Ended {
    /// The handoff's state after this ending.
    pub fn state(&self) -> HandoffState {
        match self {
            Self::Succeeded { .. } | Self::IncidentCreated { .. } => HandoffState::Succeeded,
            Self::Skipped(_) => HandoffState::Skipped,
            Self::RetryScheduled { .. } | Self::Waiting { .. } => HandoffState::Queued,
            Self::Failed(_) => HandoffState::Failed,
        }
    }

    /// The diagnosis recorded as the handoff's `last_error`, if any.
    pub fn error(&self) -> Option<&Diagnosis> {
        match self {
            Self::Succeeded { .. } | Self::IncidentCreated { .. } => None,
            Self::Skipped(d)
            | Self::Failed(d)
            | Self::RetryScheduled { error: d, .. }
            | Self::Waiting { reason: d, .. } => Some(d),
        }
    }
}

/// An attempt's outcome, written in one transaction with its events (and callback).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ended: Ended,
    /// How the visitor was matched, when the attempt got that far.
    pub contact_match: Option<ContactMatch>,
    /// The linked or created contact.
    pub contact_id: Option<Uuid>,
    pub events: Vec<NewEvent>,
    pub callback: Option<NewCallback>,
    /// The write-back to the OpenCX session (`opencx.write_back` in the outbox), when the
    /// work item exists and the org's OpenCX connection has a write-back message.
    pub write_back: Option<NewCallback>,
    /// Set when this attempt fetched a thin event's session.
    pub enriched: Option<Enrichment>,
    /// Set when this attempt told the widget backend the handoff is delayed (Unix ms).
    pub delayed_at: Option<i64>,
    /// Set when the attempt met its org's environment (or token requests) paused after a
    /// 429, until then (Unix ms): the worker claims nothing more of that org meanwhile.
    pub paused_until: Option<i64>,
}
