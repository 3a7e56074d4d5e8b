//! JSON shapes the API returns for stored rows.

use serde_json::{json, Value};

use crate::diagnostics;
use crate::store::{rfc3339, CallbackRow, CallbackState, EventRow, HandoffRow, OrgRow};

fn time(ms: Option<i64>) -> Value {
    ms.map(|ms| json!(rfc3339(ms))).unwrap_or(Value::Null)
}

/// An org, never its secret.
pub fn org(org: &OrgRow) -> Value {
    json!({
        "org_id": org.org_id,
        "name": org.name,
        "callback_url": org.callback_url,
        "previous_secret_valid_until": time(org.previous_secret_expires_at),
        "created_at": time(Some(org.created_at)),
        "updated_at": time(Some(org.updated_at)),
    })
}

/// A handoff record, without the timeline: the list view. `notes` are
/// [`diagnostics::notes`]: catalog entries for a contact left unlinked and for a callback
/// given up (`failed_callback`, its last error).
pub fn handoff_summary(h: &HandoffRow, failed_callback: Option<&str>) -> Value {
    json!({
        "handoff_id": h.handoff_id,
        "org_id": h.org_id,
        "session_id": h.session_id,
        "webhook_id": h.webhook_id,
        "channel": h.channel,
        "state": h.state.as_str(),
        "contact_match": h.contact_match.map(|m| m.as_str()),
        "contact_id": h.contact_id,
        "dynamics365_chat_id": h.dynamics365_chat_id,
        "workstream_id": h.workstream_id,
        "attempts": h.attempts,
        "next_attempt_at": if h.state.is_settled() { Value::Null } else { time(Some(h.next_attempt_at)) },
        "last_error": h.last_error,
        "notes": diagnostics::notes(h, failed_callback),
        "created_at": time(Some(h.created_at)),
        "updated_at": time(Some(h.updated_at)),
        "redacted_at": time(h.redacted_at),
    })
}

/// The full handoff record: summary, timeline (`events: [{at, kind, detail}]`) and callback
/// deliveries.
pub fn handoff_record(h: &HandoffRow, events: &[EventRow], callbacks: &[CallbackRow]) -> Value {
    let failed_callback = callbacks
        .iter()
        .rev()
        .find(|c| c.state == CallbackState::Failed)
        .and_then(|c| c.last_error.as_deref());
    let mut record = handoff_summary(h, failed_callback);
    record["events"] = events
        .iter()
        .map(|e| json!({ "at": rfc3339(e.at), "kind": e.kind, "detail": e.detail }))
        .collect();
    record["callbacks"] = callbacks
        .iter()
        .map(|c| {
            json!({
                "webhook_id": c.webhook_id,
                "event": c.event_type,
                "state": c.state,
                "attempts": c.attempts,
                "last_error": c.last_error,
                "delivered_at": time(c.delivered_at),
                "next_attempt_at": if c.state == CallbackState::Pending { time(Some(c.next_attempt_at)) } else { Value::Null },
            })
        })
        .collect();
    record
}
