//! The facts behind the troubleshooting status page (README, "Troubleshooting"): per org, the connection card,
//! handoff counts over 24 h, the queue, and recent handoffs with a plain-language reading of
//! where each one stands — on the bridge's side, the configuration's, or Dynamics routing's.
//! `GET /v1/status` returns these as JSON.

use serde_json::{json, Value};

use crate::catalog::{self, Diagnosis, Failure};
use crate::connection::orgs::ConnectionStatus;
use crate::connection::{Check, CheckStatus};
use crate::domain::{ContactMatch, HandoffState};
use crate::store::{now_ms, rfc3339, HandoffRow, OrgRow, Store, StoreError};

/// Filters of the recent-handoffs list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this org.
    pub org: Option<String>,
    pub state: Option<HandoffState>,
    /// Session ids containing this text.
    pub session: Option<String>,
    /// Recent handoffs per org, 1–500.
    pub limit: i64,
}

/// What a handoff's state means for the admin: a one-line `summary`, what to do (`hint`),
/// and which side the problem is on (`bridge`, `configuration`, `dynamics_routing`, `none`).
pub fn explain(h: &HandoffRow) -> Value {
    let error = h.last_error.as_ref();
    let (summary, hint, side) = match h.state {
        HandoffState::Succeeded => (
            format!(
                "The live work item exists in Dynamics (activityid {}) on workstream {}.",
                h.dynamics365_chat_id.as_deref().unwrap_or("?"),
                h.workstream_id.as_deref().unwrap_or("?")
            ),
            "If no representative received the chat, the problem is on the Dynamics side: check the workstream's routing rules, the representatives' capacity and presence.".to_owned(),
            "dynamics_routing",
        ),
        HandoffState::Skipped => {
            let unsupported = error.is_some_and(|e| e.code == catalog::UNSUPPORTED_CHANNEL.code);
            (
                error.map(|e| e.message.clone()).unwrap_or_default(),
                if unsupported {
                    format!("The session's channel is '{}': only web, sms and whatsapp become live chats; this is why such a handoff lands as an incident or not at all.", h.channel)
                } else {
                    error.map(|e| e.hint.clone()).unwrap_or_default()
                },
                "none",
            )
        }
        HandoffState::Failed => (
            error.map(|e| e.message.clone()).unwrap_or_default(),
            error.map(|e| e.hint.clone()).unwrap_or_default(),
            side_of(error.map(|e| e.code.as_str())),
        ),
        HandoffState::Queued | HandoffState::Processing => match error {
            Some(e) => (
                format!("Waiting to try again (attempt {} so far): {}", h.attempts, e.message),
                e.hint.clone(),
                side_of(Some(&e.code)),
            ),
            None => ("Waiting for the worker.".to_owned(), String::new(), "none"),
        },
    };
    json!({ "summary": summary, "hint": hint, "side": side })
}

/// What else an admin may want to know about a handoff, beside its state: the contact
/// match that linked no contact, and a callback that was given up. Each is a catalog entry
/// (`[{code, message, hint, detail?}]`); `failed_callback` is that callback's last error.
pub fn notes(h: &HandoffRow, failed_callback: Option<&str>) -> Vec<Diagnosis> {
    let contact = h
        .contact_match
        .and_then(contact_note)
        .map(|f| f.diagnose(None));
    let callback = failed_callback.map(|e| catalog::CALLBACK_FAILED.diagnose(e.to_owned()));
    contact.into_iter().chain(callback).collect()
}

fn side_of(code: Option<&str>) -> &'static str {
    let Some(code) = code else { return "none" };
    let step = catalog::CATALOG
        .iter()
        .find(|f| f.code == code)
        .map(|f| f.step);
    match step {
        Some(catalog::Step::Input | catalog::Step::Token | catalog::Step::Workstream) => {
            "configuration"
        }
        Some(catalog::Step::Dataverse)
            if code == catalog::DATAVERSE_UNAVAILABLE.code
                || code == catalog::DATAVERSE_THROTTLED.code =>
        {
            "dynamics_service"
        }
        Some(catalog::Step::Dataverse | catalog::Step::WorkItem) => "configuration",
        Some(catalog::Step::Callback) => "widget_backend",
        _ => "bridge",
    }
}

/// The connection card: `Active` / `Failing` / `Not connected`, the last check and the check
/// that failed with its hint.
async fn connection_card(store: &Store, org_id: &str) -> Result<Value, StoreError> {
    let Some(conn) = store.connection(org_id).await? else {
        return Ok(json!({ "status": "not_connected", "label": "Not connected",
            "hint": catalog::NOT_CONNECTED.hint }));
    };
    let checks: Vec<Check> = serde_json::from_str(&conn.checks).unwrap_or_default();
    let failing = checks.iter().find(|c| c.status == CheckStatus::Fail);
    let warning = checks.iter().find(|c| c.status == CheckStatus::Warn);
    let status = ConnectionStatus::stored(&conn.status);
    Ok(json!({
        "status": status,
        "label": match status { ConnectionStatus::Active => "Active", ConnectionStatus::Failing => "Failing" },
        "environment_url": conn.environment_url,
        "workstream_id": conn.workstream_id,
        "last_checked_at": rfc3339(conn.last_checked_at),
        "failing_check": failing,
        "warning": warning,
    }))
}

async fn org_status(
    store: &Store,
    org: &OrgRow,
    filter: &Filter,
    now: i64,
) -> Result<Value, StoreError> {
    let mut counts = serde_json::Map::new();
    for state in HandoffState::ALL {
        counts.insert(state.as_str().into(), json!(0));
    }
    for (state, n) in store
        .counts_since(&org.org_id, now - 24 * 3600 * 1000)
        .await?
    {
        counts.insert(state.as_str().into(), json!(n));
    }
    let (depth, oldest) = store.queue_depth(&org.org_id).await?;
    let recent = store
        .recent_handoffs(
            &org.org_id,
            filter.state,
            filter.session.as_deref(),
            filter.limit,
        )
        .await?;
    Ok(json!({
        "org_id": org.org_id,
        "name": org.name,
        "connection": connection_card(store, &org.org_id).await?,
        "counts_24h": counts,
        "queue": { "depth": depth, "oldest_queued_age_ms": oldest.map(|t| (now - t).max(0)) },
        "recent": recent.iter().map(|listed| {
            let h = &listed.handoff;
            json!({
                "session_id": h.session_id,
                "channel": h.channel,
                "state": h.state.as_str(),
                "contact_match": h.contact_match.map(|m| m.as_str()),
                "dynamics365_chat_id": h.dynamics365_chat_id,
                "attempts": h.attempts,
                "last_error": h.last_error,
                "notes": notes(h, listed.failed_callback.as_deref()),
                "created_at": rfc3339(h.created_at),
                "explanation": explain(h),
            })
        }).collect::<Vec<_>>(),
    }))
}

/// The status of every org (or of `filter.org`): `{"generated_at", "orgs": [...]}`.
pub async fn status(store: &Store, filter: &Filter) -> Result<Value, StoreError> {
    let now = now_ms();
    let mut orgs = Vec::new();
    for org in store.orgs().await? {
        if filter.org.as_deref().is_some_and(|o| o != org.org_id) {
            continue;
        }
        orgs.push(org_status(store, &org, filter, now).await?);
    }
    Ok(json!({ "generated_at": rfc3339(now), "orgs": orgs }))
}

/// The catalog entry that explains a contact match the admin may want to act on
/// (`ambiguous`, `not_found`, `unverified`); `None` for a match that needs no words.
fn contact_note(matched: ContactMatch) -> Option<Failure> {
    match matched {
        ContactMatch::Ambiguous => Some(catalog::CONTACT_AMBIGUOUS),
        ContactMatch::NotFound => Some(catalog::CONTACT_NOT_FOUND),
        ContactMatch::Unverified => Some(catalog::EMAIL_UNVERIFIED),
        ContactMatch::Linked | ContactMatch::Created | ContactMatch::Anonymous => None,
    }
}
