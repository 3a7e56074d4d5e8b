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
