//! The JSON bodies the API returns for stored rows: typed, so the OpenAPI document carries
//! their schemas. Times are RFC 3339 strings in UTC; a time that does not apply is `null`.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::diagnostics;
use crate::domain::catalog::Diagnosis;
use crate::domain::{ContactMatch, HandoffState};
use crate::store::{CallbackRow, CallbackState, CallbackTrouble, EventRow, HandoffRow, OrgRow};

/// An org, never its webhook secret (except `webhook_secret` on the answer that created it).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgView {
    pub org_id: String,
    pub name: String,
    pub callback_url: Option<String>,
    /// Until when the previous webhook secret is still accepted (a rotation in progress).
    pub previous_secret_valid_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The new org's webhook secret (`whsec_…`), shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl OrgView {
    pub fn new(org: &OrgRow) -> Self {
        Self {
            org_id: org.org_id.clone(),
            name: org.name.clone(),
            callback_url: org.callback_url.clone(),
            previous_secret_valid_until: org.previous_secret_expires_at.map(rfc3339),
            created_at: rfc3339(org.created_at),
            updated_at: rfc3339(org.updated_at),
            webhook_secret: None,
        }
    }
}

/// A handoff record without its timeline: the list view, and the answer to a duplicate
/// delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct HandoffSummary {
    pub handoff_id: String,
    pub org_id: String,
    pub session_id: String,
    /// The `webhook-id` of the delivery that created it.
    pub webhook_id: String,
    pub channel: String,
    pub state: HandoffState,
    pub contact_match: Option<ContactMatch>,
    /// The linked or created Dynamics `contactid`.
    pub contact_id: Option<String>,
    /// The live work item's `activityid` (chats: web, sms, whatsapp).
    pub dynamics365_chat_id: Option<String>,
    pub workstream_id: Option<String>,
    /// The incident's `incidentid` (every other channel).
    pub dynamics365_incident_id: Option<String>,
    /// The incident's case number (`ticketnumber`), read back on create.
    pub dynamics365_ticket_number: Option<String>,
    pub attempts: i64,
    /// When the next attempt is due; `null` once settled. A handoff waiting for a
    /// connection is due at the patience or the chat expiry, or at once when one is saved.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<Diagnosis>,
    /// Catalog entries beside the state: a contact left unlinked, a callback given up.
    pub notes: Vec<Diagnosis>,
    pub created_at: String,
    pub updated_at: String,
    /// When the retention period removed the session; `null` while it is kept.
    pub redacted_at: Option<String>,
    /// When the widget backend was told the handoff is delayed (`handoff.delayed`); `null`
    /// until then.
    pub delayed_at: Option<String>,
}

impl HandoffSummary {
    /// `trouble` is the newest outbox row given up or retrying, if any.
    pub fn new(h: &HandoffRow, trouble: Option<&CallbackTrouble>) -> Self {
        Self {
            handoff_id: h.handoff_id.clone(),
            org_id: h.org_id.clone(),
            session_id: h.session_id.clone(),
            webhook_id: h.webhook_id.clone(),
            channel: h.channel.clone(),
            state: h.state,
            contact_match: h.contact_match,
            contact_id: h.contact_id.clone(),
            dynamics365_chat_id: h.dynamics365_chat_id.clone(),
            workstream_id: h.workstream_id.clone(),
            dynamics365_incident_id: h.dynamics365_incident_id.clone(),
            dynamics365_ticket_number: h.dynamics365_ticket_number.clone(),
            attempts: h.attempts,
            next_attempt_at: (!h.state.is_settled()).then(|| rfc3339(h.next_attempt_at)),
            last_error: h.last_error.clone(),
            notes: diagnostics::notes(h, trouble),
            created_at: rfc3339(h.created_at),
            updated_at: rfc3339(h.updated_at),
            redacted_at: h.redacted_at.map(rfc3339),
            delayed_at: h.delayed_at.map(rfc3339),
        }
    }
}

/// The full handoff record: the summary, its timeline and its callback deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct HandoffRecord {
    #[serde(flatten)]
    pub summary: HandoffSummary,
    pub events: Vec<EventView>,
    pub callbacks: Vec<CallbackView>,
}

/// One timeline event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub at: String,
    /// An `EventKind` (`received`, `work_item_created`, `retry_scheduled`, …).
    pub kind: String,
    /// What the event adds (ids, durations, the error); its keys depend on `kind`.
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The event in one sentence, for people (the status page shows it, with `detail`
    /// folded away beneath).
    pub sentence: String,
}

/// `kind` with its `detail` in one sentence: what happened, and the one fact that matters
/// (the code, the id, the delay). Unknown kinds read as their name.
pub fn sentence(kind: &str, detail: &Value) -> String {
    let text = |key: &str| detail[key].as_str().map(str::to_owned);
    let code = || text("code").map_or(String::new(), |c| format!(" ({c})"));
    let ms = |key: &str| {
        detail[key]
            .as_u64()
            .map_or(String::new(), |v| format!(" after {v} ms"))
    };
    match kind {
        "received" => "The webhook was received and stored.".to_owned(),
        "duplicate_delivery" => {
            "The same session was delivered again; nothing new was queued.".to_owned()
        }
        "attempt_started" => format!("Attempt {} started.", detail["attempt"]),
        "enriched" => format!(
            "The session and {} history messages were fetched from OpenCX ({} channel).",
            detail["history_items"],
            text("channel").unwrap_or_default()
        ),
        "contact_resolved" => format!(
            "Contact: {}{}.",
            text("contact_match").unwrap_or_default(),
            text("contact_id").map_or(String::new(), |id| format!(" ({id})"))
        ),
        "work_item_created" => format!(
            "The live work item {} {}.",
            text("activityid").unwrap_or_default(),
            if detail["already_existed"] == true {
                "already existed (an earlier attempt made it)"
            } else {
                "was created"
            }
        ),
        "incident_created" => format!(
            "The incident {} {}.",
            text("ticketnumber").unwrap_or_else(|| text("incidentid").unwrap_or_default()),
            if detail["already_existed"] == true {
                "already existed (an earlier attempt made it)"
            } else {
                "was created"
            }
        ),
        "incident_routed" => {
            "The incident was routed (msdyn_ApplyRoutingRuleEntityRecord).".to_owned()
        }
        "attempt_failed" => format!(
            "The {} step failed{}{}.",
            text("step").unwrap_or_default(),
            code(),
            text("error_detail").map_or(String::new(), |d| format!(": {d}"))
        ),
        "request_retried" => format!(
            "The {} request failed{} and was sent again{}.",
            text("step").unwrap_or_default(),
            code(),
            ms("delay_ms")
        ),
        "attempt_panicked" => "The attempt hit an internal error; it is retried.".to_owned(),
        "retry_scheduled" => format!("Another attempt is scheduled{}{}.", ms("delay_ms"), code()),
        "waiting" => format!(
            "Nothing was sent; it waits until {}{}.",
            text("until").unwrap_or_default(),
            code()
        ),
        "woken" => format!("Made due now: {}.", text("reason").unwrap_or_default()),
        "delayed" => format!("The widget was told the handoff is delayed{}.", code()),
        "succeeded" => "The handoff succeeded.".to_owned(),
        "failed" => format!("The handoff failed for good{}.", code()),
        "skipped" => format!("Nothing was created{}.", code()),
        "released" => "A worker shutting down gave it back to the queue.".to_owned(),
        "replayed" => "An admin put it back in the queue.".to_owned(),
        "redacted" => "The session was removed at the end of its retention period.".to_owned(),
        "callback_delivered" => format!("{} was delivered.", text("event").unwrap_or_default()),
        "callback_retry_scheduled" => format!(
            "{} was refused ({}); it is sent again later.",
            text("event").unwrap_or_default(),
            text("error").unwrap_or_default()
        ),
        "callback_failed" => format!(
            "{} was given up ({}){}.",
            text("event").unwrap_or_default(),
            text("error").unwrap_or_default(),
            code()
        ),
        other => other.to_owned(),
    }
}

/// One callback delivery to the widget backend.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackView {
    pub webhook_id: String,
    /// `handoff.succeeded` or `handoff.failed`.
    pub event: String,
    pub state: CallbackState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    /// When the next delivery attempt is due; `null` unless `pending`.
    pub next_attempt_at: Option<String>,
}

/// The newest of `callbacks` (oldest first) that was given up or is retrying after a
/// refused delivery, as the list queries find it (`store::CallbackTrouble`).
pub fn callback_trouble(callbacks: &[CallbackRow]) -> Option<CallbackTrouble> {
    callbacks
        .iter()
        .rev()
        .filter(|c| matches!(c.state, CallbackState::Failed | CallbackState::Pending))
        .find_map(|c| {
            Some(CallbackTrouble {
                event_type: c.event_type.clone(),
                error: c.last_error.clone()?,
                attempts: c.attempts,
                given_up: c.state == CallbackState::Failed,
            })
        })
}

impl HandoffRecord {
    pub fn new(h: &HandoffRow, events: &[EventRow], callbacks: &[CallbackRow]) -> Self {
        let trouble = callback_trouble(callbacks);
        Self {
            summary: HandoffSummary::new(h, trouble.as_ref()),
            events: events
                .iter()
                .map(|e| EventView {
                    at: rfc3339(e.at),
                    kind: e.kind.clone(),
                    sentence: sentence(&e.kind, &e.detail),
                    detail: e.detail.clone(),
                })
                .collect(),
            callbacks: callbacks
                .iter()
                .map(|c| CallbackView {
                    webhook_id: c.webhook_id.clone(),
                    event: c.event_type.clone(),
                    state: c.state,
                    attempts: c.attempts,
                    last_error: c.last_error.clone(),
                    delivered_at: c.delivered_at.map(rfc3339),
                    next_attempt_at: (c.state == CallbackState::Pending)
                        .then(|| rfc3339(c.next_attempt_at)),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_as_sentences_with_their_one_fact() {
        assert_eq!(
            sentence(
                "attempt_failed",
                &json!({ "step": "work_item", "code": "missing_privilege", "error_detail": "HTTP 403 0x80040220: denied" })
            ),
            "The work_item step failed (missing_privilege): HTTP 403 0x80040220: denied."
        );
        assert_eq!(
            sentence(
                "incident_created",
                &json!({ "ticketnumber": "CAS-01", "already_existed": true })
            ),
            "The incident CAS-01 already existed (an earlier attempt made it)."
        );
        assert_eq!(
            sentence(
                "retry_scheduled",
                &json!({ "delay_ms": 250, "code": "dataverse_unavailable" })
            ),
            "Another attempt is scheduled after 250 ms (dataverse_unavailable)."
        );
        assert_eq!(sentence("something_new", &json!({})), "something_new");
    }
}
