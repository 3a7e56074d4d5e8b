//! The states of a handoff and the ways a visitor can be matched to a Dynamics contact:
//! shared by the store that keeps them and the job that decides them.

use serde::Serialize;

/// Where a handoff is. `queued` → `processing` → `succeeded` | `failed` | `skipped`; a
/// transient error puts it back to `queued` with a later `next_attempt_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffState {
    Queued,
    Processing,
    Succeeded,
    Failed,
    Skipped,
}

impl HandoffState {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Succeeded,
        Self::Failed,
        Self::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the handoff is finished for good.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }
}

/// How the visitor was matched to a Dynamics contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactMatch {
    /// Exactly one active contact has the verified email.
    Linked,
    /// None had it and the connection has `create_contact_if_missing`.
    Created,
    NotFound,
    /// Two or more active contacts have it; none is linked.
    Ambiguous,
    /// The visitor gave no email.
    Anonymous,
    /// The email is not verified, so it was not used.
    Unverified,
}

impl ContactMatch {
    pub const ALL: [Self; 6] = [
        Self::Linked,
        Self::Created,
        Self::NotFound,
        Self::Ambiguous,
        Self::Anonymous,
        Self::Unverified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Created => "created",
            Self::NotFound => "not_found",
            Self::Ambiguous => "ambiguous",
            Self::Anonymous => "anonymous",
            Self::Unverified => "unverified",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// What happened to a handoff, as recorded on its timeline (`handoff_events.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The webhook was stored (`{webhook_id}`).
    Received,
    /// Another delivery for the same session (`{webhook_id}`).
    DuplicateDelivery,
    AttemptStarted,
    ContactResolved,
    WorkItemCreated,
    AttemptFailed,
    AttemptPanicked,
    RetryScheduled,
    Succeeded,
    Failed,
    Skipped,
    /// Given back to the queue by a worker shutting down.
    Released,
    /// Put back in the queue by an admin.
    Replayed,
    /// The session was removed when the retention period ended.
    Redacted,
    CallbackDelivered,
    CallbackRetryScheduled,
    CallbackFailed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::DuplicateDelivery => "duplicate_delivery",
            Self::AttemptStarted => "attempt_started",
            Self::ContactResolved => "contact_resolved",
            Self::WorkItemCreated => "work_item_created",
            Self::AttemptFailed => "attempt_failed",
            Self::AttemptPanicked => "attempt_panicked",
            Self::RetryScheduled => "retry_scheduled",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Released => "released",
            Self::Replayed => "replayed",
            Self::Redacted => "redacted",
            Self::CallbackDelivered => "callback_delivered",
            Self::CallbackRetryScheduled => "callback_retry_scheduled",
            Self::CallbackFailed => "callback_failed",
        }
    }
}
