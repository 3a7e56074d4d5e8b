//! Thin events: turning the session and history fetched from OpenCX (`handoff::attempt`
//! reads them with the org's OpenCX connection) into the bridge's own [`QueuedHandoff`], and
//! what a failed fetch means for the attempt ([`Stop`]); and the write-back that puts
//! `dynamics365_chat_id` on the session.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::domain::catalog::{self, Diagnosis};
use crate::domain::handoff::QueuedMessage;
use crate::domain::{EmailRule, HandoffRequest, OrgId, QueuedHandoff, ThinHandoff};
use crate::opencx::{self, History, OpenCxClient, OpenCxError};
use crate::webhook::envelope::{ChannelRef, HandoffInfo, Session, SessionContact};

/// The most transcript text kept from a fetched history, in bytes (as much as a pushed
/// session may carry in its whole webhook body); the oldest messages go first.
pub const MAX_TRANSCRIPT_BYTES: usize = 256 * 1024;

/// How a fetch ended without a session: what to tell the attempt.
pub(super) enum Stop {
    /// Nothing was sent: wait that long (the API key's pacer), or with `None` until the
    /// org's OpenCX connection is saved (parked).
    Wait(Diagnosis, Option<Duration>),
    /// A transient failure, with the upstream's `Retry-After`.
    Retry(Diagnosis, Option<Duration>),
    Fail(Diagnosis),
}

impl Stop {
    /// The same stop, its hint naming `org_id`'s routes.
    pub(super) fn for_org(self, org_id: &str) -> Self {
        match self {
            Self::Wait(d, pause) => Self::Wait(d.for_org(org_id), pause),
            Self::Retry(d, after) => Self::Retry(d.for_org(org_id), after),
            Self::Fail(d) => Self::Fail(d.for_org(org_id)),
        }
    }

    /// The stop for a failed OpenCX call.
    pub(super) fn of(err: &OpenCxError) -> Self {
        let diag = err.diagnose();
        match err {
            OpenCxError::Paced { wait } => Self::Wait(diag, Some(*wait)),
            _ if err.is_transient() => Self::Retry(diag, err.retry_after()),
            _ => Self::Fail(diag),
        }
    }
}

/// What was fetched: the request, and the payload and channel that replace the thin
/// event's on the row.
pub struct Fetched {
    pub request: HandoffRequest,
    /// The messages kept (also in `payload`), for the transcript note.
    pub history: Vec<QueuedMessage>,
    pub payload: String,
    pub channel: String,
    pub history_truncated: bool,
}

/// The fetched `session` and `history` as the bridge's payload. The verified flag is the
/// session's (or its contact's) when OpenCX gives one, else `contact_emails_verified`.
pub fn fetched(
    org_id: &OrgId,
    thin: &ThinHandoff,
    session: opencx::Session,
    history: History,
    contact_emails_verified: bool,
) -> Result<Fetched, Diagnosis> {
    let contact = session.contact.clone();
    let flag = session
        .verified
        .or_else(|| contact.as_ref().and_then(|c| c.verified));
    let (verified, rule) = match flag {
        Some(flag) => (flag, EmailRule::OpencxFlag),
        None => (contact_emails_verified, EmailRule::OrgSetting),
    };
    let (messages, cut) = transcript(&history.items);
    let handed_off = session.handoff.is_some();
    let pushed_shape = Session {
        id: Some(thin.session_id.clone()),
        channel: Some(ChannelRef {
            kind: Some(session.channel.kind.clone()),
        }),
        language: session.language.clone(),
        contact: contact.map(|c| SessionContact {
            id: c.id,
            name: c.name,
            email: c.email,
            phone_number: c.phone_number,
            verified,
        }),
        handoff: session.handoff.map(|h| HandoffInfo {
            summary: Some(h.summary),
            sentiment: h.sentiment,
            reason: thin.reason.clone(),
        }),
        history: Vec::new(),
        created_at: None,
    };
    let mut request =
        HandoffRequest::from_session_at(org_id, &pushed_shape, "/").map_err(|errors| {
            let fields: Vec<String> = errors
                .iter()
                .map(|e| format!("{} {}", e.pointer, e.message))
                .collect();
            let not_handed_off = if handed_off {
                ""
            } else {
                "the session has not been handed off in OpenCX (no handoff object); "
            };
            catalog::OPENCX_SESSION_INCOMPLETE.diagnose(format!(
                "session '{}': {not_handed_off}{}",
                thin.session_id,
                fields.join("; ")
            ))
        })?;
    request.customer.email_rule = rule;
    let history_truncated = history.truncated || cut;
    let mut queued = QueuedHandoff::new(&request, messages.clone());
    queued.history_truncated = history_truncated;
    Ok(Fetched {
        channel: request.channel.as_str().to_owned(),
        payload: serde_json::to_string(&queued).expect("a queued handoff serializes"),
        history: messages,
        request,
        history_truncated,
    })
}

/// The messages of a history (items `{created_at, event: {type: message, sender, text}}`;
/// other events are left out), newest kept within [`MAX_TRANSCRIPT_BYTES`]; `true` when
/// older ones were cut.
fn transcript(items: &[Value]) -> (Vec<QueuedMessage>, bool) {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let mut messages: Vec<QueuedMessage> = items
        .iter()
        .filter(|item| item["event"]["type"] == "message")
        .map(|item| QueuedMessage {
            created_at: text(&item["created_at"]),
            sender: text(&item["event"]["sender"]),
            text: text(&item["event"]["text"]),
        })
        .collect();
    let size = |m: &QueuedMessage| {
        [&m.created_at, &m.sender, &m.text]
            .iter()
            .map(|f| f.as_deref().map_or(0, str::len))
            .sum::<usize>()
    };
    let mut total: usize = messages.iter().map(size).sum();
    let mut cut = 0;
    while total > MAX_TRANSCRIPT_BYTES && cut < messages.len() {
        total -= size(&messages[cut]);
        cut += 1;
    }
    messages.drain(..cut);
    (messages, cut > 0)
}

/// The write-back's stored payload: what `POST /chat/sessions/{id}/send` sends, with
/// `custom_data` the ids to put on the session (`{dynamics365_chat_id}` for a chat,
/// `{dynamics365_incident_id, dynamics365_ticket_number}` for an incident).
pub fn write_back_payload(session_id: &str, message: &str, custom_data: Value) -> String {
    json!({
        "session_id": session_id,
        "sender": "agent",
        "message": { "type": "text", "text": message },
        "custom_data": custom_data,
    })
    .to_string()
}

/// Sends a stored write-back once: when the session already carries every `custom_data`
/// value (an earlier attempt's send arrived but its outcome was not recorded), nothing is
/// sent again. The check is skipped on a first attempt (nothing can have been sent).
/// `Ok(true)` when it was sent now, `Ok(false)` when it was there already.
pub async fn write_back(
    client: &OpenCxClient<'_>,
    payload: &str,
    first_attempt: bool,
) -> Result<bool, OpenCxError> {
    let body: Value = serde_json::from_str(payload)
        .map_err(|e| OpenCxError::UnexpectedBody(format!("the stored write-back: {e}")))?;
    let session_id = body["session_id"].as_str().unwrap_or_default();
    let custom: Map<String, Value> = body["custom_data"].as_object().cloned().unwrap_or_default();
    if !first_attempt {
        let session = client.session(session_id).await?;
        let present = session.custom_data.unwrap_or_default();
        if custom.iter().all(|(k, v)| present.get(k) == Some(v)) {
            return Ok(false);
        }
    }
    let sender = body["sender"].as_str().unwrap_or("agent");
    client
        .send(session_id, sender, &body["message"], &custom)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sender: &str, text: &str) -> Value {
        json!({ "created_at": "2026-11-23T10:00:00Z",
                "event": { "type": "message", "sender": sender, "text": text } })
    }

    #[test]
    fn the_transcript_keeps_messages_only_and_the_newest_within_its_bound() {
        let items = vec![
            item("contact", "hello"),
            json!({ "created_at": "2026-11-23T10:00:01Z", "event": { "type": "human_agent_comment", "text": "internal" } }),
            item("ai", "hi"),
        ];
        let (messages, cut) = transcript(&items);
        assert!(!cut);
        let texts: Vec<_> = messages
            .iter()
            .map(|m| m.text.as_deref().unwrap())
            .collect();
        assert_eq!(texts, ["hello", "hi"], "no internal comment");

        let long = "x".repeat(MAX_TRANSCRIPT_BYTES / 2);
        let items = vec![
            item("contact", "oldest"),
            item("ai", &long),
            item("contact", &long),
        ];
        let (messages, cut) = transcript(&items);
        assert!(cut);
        assert_eq!(messages.len(), 1, "only the newest fits");
        assert_eq!(messages[0].sender.as_deref(), Some("contact"));
    }
}
