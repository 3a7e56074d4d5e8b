//! The states of a handoff and the ways a visitor can be matched to a Dynamics contact:
//! shared by the store that keeps them and the job that decides them.

use serde::{Deserialize, Serialize};

use super::{Channel, EmailAddress, OrgId, SessionId, VerifiedEmail};

/// Where a handoff is. `queued` → `processing` → `succeeded` | `failed` | `skipped`; a
/// transient error puts it back to `queued` with a later `next_attempt_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The webhook was stored (`{webhook_id}`).
    Received,
    /// Another delivery for the same session (`{webhook_id}`).
    DuplicateDelivery,
    AttemptStarted,
    /// A thin event's session and history were fetched from OpenCX and stored in place of
    /// the event (`{channel, history_items, history_truncated, email_rule, duration_ms}`).
    Enriched,
    ContactResolved,
    WorkItemCreated,
    /// A non-chat session's incident was created or found (`{incidentid, ticketnumber,
    /// already_existed, customer, fallback_customer, caseorigincode, transcript_note,
    /// duration_ms}`).
    IncidentCreated,
    /// The incident was routed with `msdyn_ApplyRoutingRuleEntityRecord` (`{incidentid,
    /// action, duration_ms}`).
    IncidentRouted,
    AttemptFailed,
    /// A request that failed transiently was sent again within the attempt
    /// (`{step, code, delay_ms}`).
    RequestRetried,
    AttemptPanicked,
    RetryScheduled,
    /// The attempt sent nothing and waits (`{code, until, parked}`): a paused environment,
    /// or no connection yet (parked until one is saved). Not counted as an attempt.
    Waiting,
    /// Made due now: the org's connection was saved or checked again, or an admin asked
    /// (`{reason}`).
    Woken,
    /// The handoff waited past the patience without a work item; the widget backend is told
    /// (`handoff.delayed`, `{code, next_attempt_at}`).
    Delayed,
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
            Self::Enriched => "enriched",
            Self::ContactResolved => "contact_resolved",
            Self::WorkItemCreated => "work_item_created",
            Self::IncidentCreated => "incident_created",
            Self::IncidentRouted => "incident_routed",
            Self::AttemptFailed => "attempt_failed",
            Self::RequestRetried => "request_retried",
            Self::AttemptPanicked => "attempt_panicked",
            Self::RetryScheduled => "retry_scheduled",
            Self::Waiting => "waiting",
            Self::Woken => "woken",
            Self::Delayed => "delayed",
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

/// Which rule decided whether the visitor's email counts as verified (the lookup key for
/// a contact), so the record can say why an email was or was not used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailRule {
    /// The pushed session's `contact.verified` (absent reads as not verified).
    #[default]
    WebhookFlag,
    /// The session fetched from OpenCX carried a `verified` flag (on the session or its
    /// contact).
    OpencxFlag,
    /// The fetched session carried no flag: the org's OpenCX setting
    /// `contact_emails_verified` decided.
    OrgSetting,
}

impl EmailRule {
    /// The rule in words, for the record's contact note; `verified` is what it decided.
    pub fn describe(self, verified: bool) -> String {
        let decided = if verified { "verified" } else { "not verified" };
        match self {
            Self::WebhookFlag => format!(
                "The email counts as {decided} by the webhook's data.session.contact.verified."
            ),
            Self::OpencxFlag => {
                format!("The email counts as {decided} by the verified flag of the OpenCX session.")
            }
            Self::OrgSetting => format!(
                "The OpenCX session carried no verified flag, so the org's OpenCX setting contact_emails_verified = {verified} decided: {decided}."
            ),
        }
    }
}

/// The customer as the representative should see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customer {
    pub name: Option<String>,
    pub email: Option<EmailAddress>,
    pub phone: Option<String>,
    /// The email, when (and only when) it counts as verified: the lookup key for a contact.
    pub verified_email: Option<VerifiedEmail>,
    /// The rule that decided whether the email counts as verified.
    pub email_rule: EmailRule,
}

/// A validated handoff: everything the worker needs, every rule already checked.
#[derive(Debug, Clone)]
pub struct HandoffRequest {
    pub org_id: OrgId,
    pub session_id: SessionId,
    pub channel: Channel,
    pub customer: Customer,
    pub summary: String,
    pub language: Option<String>,
    /// `handoff.sentiment` (`angry`, `neutral`, `happy`), when given.
    pub sentiment: Option<String>,
    /// Why the AI handed off (the event's `reason`), when given.
    pub reason: Option<String>,
}

/// The payload version of [`ThinHandoff`] (`handoffs.payload_version`): a thin event
/// waiting for its session to be fetched from OpenCX. The attempt that fetches it replaces
/// the payload with a [`QueuedHandoff`] (version [`QUEUED_PAYLOAD_VERSION`]).
pub const THIN_PAYLOAD_VERSION: i64 = 3;

/// What a thin `conversation.handoff_to_human` event is stored with until its session is
/// fetched: the event's `data` (OpenCX's webhook reference, `../shared/OPENCX.md` §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinHandoff {
    /// `data.conversation_id`: the OpenCX session id.
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// The channel column of a thin handoff until its session is fetched.
pub const CHANNEL_NOT_FETCHED: &str = "unknown";

/// The payload version of [`QueuedHandoff`] (`handoffs.payload_version`). Version 1 rows
/// hold the OpenCX session as received; they are still read.
pub const QUEUED_PAYLOAD_VERSION: i64 = 2;

/// What a queued handoff is stored with (`handoffs.payload`, version 2): the bridge's own
/// shape of a validated request, so the worker reads it back without the OpenCX validator.
/// `history` is kept for the representative (and removed with the rest at retention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedHandoff {
    pub session_id: String,
    pub channel: String,
    pub customer: QueuedCustomer,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<QueuedMessage>,
    /// Whether `history` was cut at the fetch's bounds (OpenCX sessions only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history_truncated: bool,
}

/// The customer in a [`QueuedHandoff`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCustomer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the email counts as verified (only then is it a contact lookup key).
    #[serde(default)]
    pub email_verified: bool,
    /// The rule that decided `email_verified` (absent in rows stored before it existed:
    /// the webhook's flag).
    #[serde(default)]
    pub email_rule: EmailRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// One transcript message in a [`QueuedHandoff`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl QueuedHandoff {
    /// The payload for a validated request and its transcript.
    pub fn new(request: &HandoffRequest, history: Vec<QueuedMessage>) -> Self {
        let customer = &request.customer;
        Self {
            session_id: request.session_id.as_str().to_owned(),
            channel: request.channel.as_str().to_owned(),
            customer: QueuedCustomer {
                name: customer.name.clone(),
                email: customer.email.as_ref().map(|e| e.as_str().to_owned()),
                email_verified: customer.verified_email.is_some(),
                email_rule: customer.email_rule,
                phone: customer.phone.clone(),
            },
            summary: request.summary.clone(),
            language: request.language.clone(),
            sentiment: request.sentiment.clone(),
            reason: request.reason.clone(),
            history,
            history_truncated: false,
        }
    }

    /// The request again, for `org_id`. The values were validated at intake; this parses
    /// them back into their types, and fails only on a damaged row.
    pub fn into_request(self, org_id: &OrgId) -> Result<HandoffRequest, String> {
        let session_id =
            SessionId::parse(&self.session_id).map_err(|why| format!("session_id {why}"))?;
        let email = self
            .customer
            .email
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .map_err(|why| format!("customer.email {why}"))?;
        Ok(HandoffRequest {
            org_id: org_id.clone(),
            session_id,
            channel: Channel::parse(&self.channel),
            customer: Customer {
                name: self.customer.name,
                verified_email: email
                    .clone()
                    .and_then(|e| VerifiedEmail::from_contact(e, self.customer.email_verified)),
                email,
                phone: self.customer.phone,
                email_rule: self.customer.email_rule,
            },
            summary: self.summary,
            language: self.language,
            sentiment: self.sentiment,
            reason: self.reason,
        })
    }
}
