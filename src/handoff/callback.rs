//! Signed callbacks to the widget backend (`handoff.succeeded`, `handoff.failed`,
//! `handoff.delayed`), and the write-back to the OpenCX session (`opencx.write_back`, sent
//! with the org's OpenCX connection instead of signed), from the same outbox.
//!
//! Each event is written to the `callbacks` outbox in the same transaction as the handoff's
//! outcome, then delivered by the worker, signed per Standard Webhooks with the org's current
//! webhook secret. Its `webhook-id` is deterministic (`msg_` + UUIDv5 of org, session and
//! event), so a redelivery after a crash is recognisably the same event.

use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use super::enrich;
use super::work_item::KEY_NAMESPACE;
use super::worker::Worker;
use crate::clock::rfc3339;
use crate::connection::orgs::opencx_access;
use crate::domain::catalog::Diagnosis;
use crate::domain::{outbox_failure, ContactMatch, WRITE_BACK_EVENT};
use crate::domain::{EventKind, WorkstreamId};
use crate::domain::{NewCallback, NewEvent};
use crate::dynamics::RetryClass;
use crate::store::{CallbackRow, CallbackState, HandoffRow, Lease, OrgRow};
use crate::webhook::address::{self, AddressPolicy, NonPublicAddress};
use crate::webhook::send::signed_post;

/// The deterministic `webhook-id` of an event about a session.
pub fn webhook_id(org_id: &str, session_id: &str, event_type: &str) -> String {
    let id = Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("callback:{org_id}/{session_id}/{event_type}").as_bytes(),
    );
    format!("msg_{}", id.simple())
}

/// An event about `handoff`'s session for the org's callback URL (none without one):
/// `{event, organization_id, data}` under its deterministic id.
fn event(
    org: &OrgRow,
    handoff: &HandoffRow,
    event_type: &'static str,
    data: serde_json::Value,
) -> Option<NewCallback> {
    org.callback_url.as_ref()?;
    let payload = json!({
        "event": event_type,
        "organization_id": org.org_id,
        "data": data,
    });
    Some(NewCallback {
        webhook_id: webhook_id(&org.org_id, &handoff.session_id, event_type),
        event_type,
        payload: payload.to_string(),
    })
}

/// `handoff.succeeded`, when the org has a callback URL; `handed_off_at` in Unix ms.
pub fn succeeded_event(
    org: &OrgRow,
    handoff: &HandoffRow,
    chat_id: &str,
    contact_id: Option<Uuid>,
    contact_match: Option<ContactMatch>,
    workstream: Option<WorkstreamId>,
    handed_off_at: i64,
) -> Option<NewCallback> {
    let data = json!({
        "session_id": handoff.session_id,
        "dynamics365_chat_id": chat_id,
        "contact_id": contact_id,
        "contact_match": contact_match.map(ContactMatch::as_str),
        "workstream_id": workstream.map(|w| w.to_string()),
        "handed_off_at": rfc3339(handed_off_at),
    });
    event(org, handoff, "handoff.succeeded", data)
}

/// `handoff.succeeded` for a session that became an incident, when the org has a callback
/// URL: `record: "incident"` with `dynamics365_incident_id` and `dynamics365_ticket_number`
/// instead of `dynamics365_chat_id`; `handed_off_at` in Unix ms.
pub fn incident_event(
    org: &OrgRow,
    handoff: &HandoffRow,
    incident: &super::incident::NewIncident,
    contact_id: Option<Uuid>,
    contact_match: Option<ContactMatch>,
    handed_off_at: i64,
) -> Option<NewCallback> {
    let data = json!({
        "session_id": handoff.session_id,
        "record": "incident",
        "dynamics365_incident_id": incident.incidentid,
        "dynamics365_ticket_number": incident.ticketnumber,
        "contact_id": contact_id,
        "contact_match": contact_match.map(ContactMatch::as_str),
        "handed_off_at": rfc3339(handed_off_at),
    });
    event(org, handoff, "handoff.succeeded", data)
}

/// `handoff.failed`, when the org has a callback URL.
pub fn failed_event(org: &OrgRow, handoff: &HandoffRow, diag: &Diagnosis) -> Option<NewCallback> {
    let data = json!({
        "session_id": handoff.session_id,
        "error": { "code": diag.code, "message": diag.message, "hint": diag.hint },
    });
    event(org, handoff, "handoff.failed", data)
}

/// `handoff.delayed`, when the org has a callback URL: the handoff has waited past the org's
/// patience without a live work item. `reason` is why it waits; times are RFC 3339.
pub fn delayed_event(
    org: &OrgRow,
    handoff: &HandoffRow,
    reason: &Diagnosis,
    next_attempt_at: i64,
    waiting_since: i64,
) -> Option<NewCallback> {
    let data = json!({
        "session_id": handoff.session_id,
        "reason": { "code": reason.code, "message": reason.message },
        "next_attempt_at": rfc3339(next_attempt_at),
        "waiting_since": rfc3339(waiting_since),
    });
    event(org, handoff, "handoff.delayed", data)
}

/// Delivers one claimed callback and records the result (fenced by its `lease`).
pub async fn deliver(
    worker: &Worker,
    callback: &CallbackRow,
    lease: &Lease,
) -> Result<(), crate::store::StoreError> {
    let started = Instant::now();
    let result = super::worker::caught(send(worker, callback))
        .await
        .unwrap_or_else(|what| {
            tracing::error!(panic = %what, "the callback delivery panicked; it is recorded and retried");
            Err((
                format!("internal error: {what}"),
                RetryClass::Transient { retry_after: None },
            ))
        });
    let duration_ms = started.elapsed().as_millis() as u64;
    let now = worker.clock.now_ms();
    let attempts = u32::try_from(callback.attempts).unwrap_or(u32::MAX);
    let (state, next, error, kind) = match result {
        Ok(status) => {
            tracing::info!(webhook_id = %callback.webhook_id, status, duration_ms, "callback delivered");
            (
                CallbackState::Delivered,
                now,
                None,
                EventKind::CallbackDelivered,
            )
        }
        Err((detail, class)) => {
            tracing::info!(webhook_id = %callback.webhook_id, %detail, duration_ms, "callback attempt failed");
            let window = worker.settings.retry.give_up_after.as_millis() as i64;
            match class {
                RetryClass::Transient { retry_after }
                    if now - callback.window_started_at < window =>
                {
                    let since_first = std::time::Duration::from_millis(
                        u64::try_from(now - callback.window_started_at).unwrap_or(0),
                    );
                    let delay = worker
                        .settings
                        .retry
                        .delay(attempts, since_first, retry_after);
                    (
                        CallbackState::Pending,
                        now + delay.as_millis() as i64,
                        Some(detail),
                        EventKind::CallbackRetryScheduled,
                    )
                }
                _ => (
                    CallbackState::Failed,
                    now,
                    Some(detail),
                    EventKind::CallbackFailed,
                ),
            }
        }
    };
    let outcome = match state {
        CallbackState::Pending => "retry_scheduled",
        other => other.as_str(),
    };
    worker
        .metrics
        .callback_attempted(&callback.org_id, &callback.event_type, outcome);
    let mut detail = json!({
        "webhook_id": callback.webhook_id,
        "event": callback.event_type,
        "attempt": callback.attempts,
        "duration_ms": duration_ms,
    });
    if let Some(error) = &error {
        detail["error"] = json!(error);
        if state == CallbackState::Failed {
            detail["code"] = json!(outbox_failure(&callback.event_type).code);
        }
    }
    let event = NewEvent {
        at: now,
        kind,
        detail,
    };
    worker
        .store
        .finish_callback(callback, lease, state, next, error.as_deref(), &event)
        .await?;
    Ok(())
}

/// Puts `dynamics365_chat_id` on the OpenCX session with the org's OpenCX connection
/// (`enrich::write_back`: at most once per session). `Ok(201)` when sent now, `Ok(200)`
/// when the session already had it. A refused key, an unknown session and a missing
/// connection are permanent; no answer, 408, 429 and 5xx are transient.
async fn write_back(worker: &Worker, callback: &CallbackRow) -> Result<u16, (String, RetryClass)> {
    let conn = worker
        .store
        .opencx_connection(&callback.org_id)
        .await
        .map_err(|e| (e.to_string(), RetryClass::Transient { retry_after: None }))?
        .ok_or_else(|| {
            (
                "the org no longer has an OpenCX connection".to_owned(),
                RetryClass::Permanent,
            )
        })?;
    let (base, key) = opencx_access(&worker.vault, &conn, worker.settings.allow_insecure)
        .map_err(|d| (d.detail.unwrap_or(d.message), RetryClass::Permanent))?;
    let client = worker.opencx.client(base, &key);
    match enrich::write_back(&client, &callback.payload, callback.attempts <= 1).await {
        Ok(true) => Ok(201),
        Ok(false) => Ok(200),
        Err(err) => {
            let class = if err.is_transient() {
                RetryClass::Transient {
                    retry_after: err.retry_after(),
                }
            } else {
                RetryClass::Permanent
            };
            Err((err.to_string(), class))
        }
    }
}

/// Sends the signed POST; `Ok(status)` on 2xx. Every failure is transient (the endpoint may
/// be mid-deploy), bounded by the retry window. A write-back goes to OpenCX instead.
async fn send(worker: &Worker, callback: &CallbackRow) -> Result<u16, (String, RetryClass)> {
    if callback.event_type == WRITE_BACK_EVENT {
        return write_back(worker, callback).await;
    }
    let transient = |detail: String| (detail, RetryClass::Transient { retry_after: None });
    let org = worker
        .store
        .org(&callback.org_id)
        .await
        .map_err(|e| transient(e.to_string()))?
        .ok_or_else(|| ("the org no longer exists".to_owned(), RetryClass::Permanent))?;
    let Some(url) = org.callback_url.as_deref() else {
        return Err((
            "the org no longer has a callback_url".to_owned(),
            RetryClass::Permanent,
        ));
    };
    let url = reqwest::Url::parse(url).map_err(|e| (e.to_string(), RetryClass::Permanent))?;
    let policy = AddressPolicy {
        allow_loopback: worker.settings.allow_insecure,
    };
    address::check_target(&url, policy)
        .map_err(|why| (format!("callback_url {why}"), RetryClass::Permanent))?;
    let secret = worker
        .vault
        .webhook_secret(&org)
        .map_err(|e| (e, RetryClass::Permanent))?;
    let response = signed_post(
        &worker.callbacks,
        url,
        &secret,
        &callback.webhook_id,
        callback.payload.clone().into_bytes(),
    )
    .send()
    .await
    .map_err(|e| transient(describe_delivery_error(&e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        let retry_after = crate::outbound::retry_after(response.headers());
        Err((
            format!("HTTP {}", status.as_u16()),
            RetryClass::Transient { retry_after },
        ))
    }
}

/// A delivery failure as recorded: what happened, without the host or port (the record is
/// shown to admins and the outcome must not map the internal network).
fn describe_delivery_error(err: &reqwest::Error) -> String {
    let refused = std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
        .any(|e| e.is::<NonPublicAddress>());
    if refused {
        NonPublicAddress.to_string()
    } else if err.is_timeout() {
        "no answer (timed out)".into()
    } else if err.is_connect() {
        "no answer (could not connect)".into()
    } else {
        "no answer (the connection failed)".into()
    }
}
