//! The facts behind the troubleshooting status page (README, "Troubleshooting"): per org, the connection card,
//! handoff counts over 24 h, the queue, and recent handoffs with a plain-language reading of
//! where each one stands — on the bridge's side, the configuration's, or Dynamics routing's.
//! `GET /v1/status` returns these as JSON.

use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::connection::orgs::ConnectionStatus;
use crate::connection::vault::Vault;
use crate::connection::{Check, CheckStatus};
use crate::domain::catalog::{self, Diagnosis, Failure};
use crate::domain::{outbox_failure, ContactMatch, HandoffState};
use crate::domain::{QueuedHandoff, QUEUED_PAYLOAD_VERSION};
use crate::store::{
    CallbackTrouble, ConnectionRow, Cursor, HandoffQuery, HandoffRow, ListedHandoff,
    OpenCxConnectionRow, OrgRow, QueueDepth, Store, StoreError,
};

/// What a status view shows: every org, one line each (`org: None`), or one org with a page
/// of its handoffs.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this org, with a page of its handoffs.
    pub org: Option<String>,
    pub state: Option<HandoffState>,
    /// Session ids containing this text.
    pub session: Option<String>,
    /// Customers whose name or email contains this text (ASCII case ignored).
    pub customer: Option<String>,
    /// The page starts just older than this (`next_before` of the page before).
    pub before: Option<Cursor>,
    /// Handoffs per page, 1–500.
    pub limit: i64,
}

/// The facts of `GET /v1/status`: every org (or the one asked for), as of `generated_at`;
/// orgs with a failing connection first, then the others that need attention, then by name.
/// Only the one org asked for (`?org=`) comes with its handoffs (`recent`): the overview of
/// every org stays one line each however many handoffs there are.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusReport {
    pub generated_at: String,
    pub orgs: Vec<OrgStatus>,
}

/// One org on the status page.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgStatus {
    pub org_id: String,
    pub name: String,
    /// Whether an admin should look: the Dynamics connection is not active, the OpenCX one
    /// is failing, or a handoff failed in the last 24 hours. Such orgs are listed first.
    pub needs_attention: bool,
    pub connection: ConnectionCard,
    /// The OpenCX connection (thin events' sessions, the write-back).
    pub opencx: OpenCxCard,
    /// How `dynamics365_chat_id` gets back to OpenCX.
    pub write_back: WriteBackPaths,
    /// Handoffs received in the last 24 hours, by their state now.
    pub counts_24h: Counts,
    pub queue: QueueView,
    /// A page of the org's handoffs (at most the filter's `limit`), newest first and
    /// explained; only when the view is of this org alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent: Option<Vec<RecentHandoff>>,
    /// The cursor of the next, older page (`before=`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// Handoffs by state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Counts {
    pub queued: i64,
    pub processing: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
}

/// The org's waiting work.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    /// Handoffs `queued` or `processing`.
    pub depth: i64,
    /// Age of the oldest `queued` handoff, in milliseconds; `null` when none waits.
    pub oldest_queued_age_ms: Option<i64>,
}

/// The state of an org's connection on its card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    Failing,
    NotConnected,
}

impl CardStatus {
    /// The card's label: `Active`, `Failing` or `Not connected`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Failing => "Failing",
            Self::NotConnected => "Not connected",
        }
    }
}

impl From<ConnectionStatus> for CardStatus {
    fn from(status: ConnectionStatus) -> Self {
        match status {
            ConnectionStatus::Active => Self::Active,
            ConnectionStatus::Failing => Self::Failing,
        }
    }
}

/// The connection card: `Active` / `Failing` / `Not connected`, the last check, and the
/// check that failed (or warned) with its hint. Fields that do not apply are left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionCard {
    pub status: CardStatus,
    /// `Active`, `Failing` or `Not connected`.
    pub label: &'static str,
    /// What to do, without a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workstream_id: Option<String>,
    /// The workstream's `msdyn_name`, as the last check found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workstream_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_check: Option<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<Check>,
    /// When a handoff last reached Dynamics through this connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// When the client secret expires, as entered with the connection; the card warns
    /// (`client_secret_expiring`) 30 days ahead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<String>,
    /// The last handoff that failed for good for a reason of the connection, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Diagnosis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<String>,
    /// Since when handoffs have failed that way with no success since: the card is
    /// `Failing` with a `handoffs` check, whatever the last test-and-save said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
}

/// The OpenCX connection card: `Active` / `Failing` / `Not connected`, the last check and
/// the check that failed with its hint.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenCxCard {
    pub status: CardStatus,
    /// `Active`, `Failing` or `Not connected`.
    pub label: &'static str,
    /// What not having one means and how to connect, without a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<String>,
    /// Whether OpenCX contact emails without a verified flag count as verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_emails_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_check: Option<Check>,
}

/// The ways `dynamics365_chat_id` reaches OpenCX, and the same in a sentence.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteBackPaths {
    /// Signed callbacks go to the org's `callback_url`.
    pub callback: bool,
    /// The write-back message puts the id on the OpenCX session.
    pub opencx_session: bool,
    pub summary: String,
}

impl WriteBackPaths {
    fn new(callback: bool, opencx_session: bool) -> Self {
        let summary = match (callback, opencx_session) {
            (true, true) => "dynamics365_chat_id reaches OpenCX twice: in the signed callback to the org's callback_url, and on the OpenCX session through the write-back message.",
            (true, false) => "dynamics365_chat_id reaches OpenCX in the signed callback to the org's callback_url; the OpenCX session does not carry it (no write_back_message on the OpenCX connection).",
            (false, true) => "dynamics365_chat_id is put on the OpenCX session through the write-back message; no signed callbacks are sent (the org has no callback_url).",
            (false, false) => "dynamics365_chat_id is only recorded here: the org has no callback_url and no OpenCX write-back, so OpenCX's troubleshooting rule will not find it on the session.",
        };
        Self {
            callback,
            opencx_session,
            summary: summary.to_owned(),
        }
    }
}

/// One recent handoff on the status page.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentHandoff {
    pub session_id: String,
    pub channel: String,
    pub state: HandoffState,
    pub contact_match: Option<ContactMatch>,
    pub dynamics365_chat_id: Option<String>,
    /// The incident of a non-chat session and its case number.
    pub dynamics365_incident_id: Option<String>,
    pub dynamics365_ticket_number: Option<String>,
    pub attempts: i64,
    pub last_error: Option<Diagnosis>,
    pub notes: Vec<Diagnosis>,
    pub created_at: String,
    /// When the widget backend was told the handoff is delayed; `null` until then.
    pub delayed_at: Option<String>,
    pub explanation: Explanation,
}

/// Which side a handoff's problem is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Nothing is wrong, or nothing is anyone's to fix.
    None,
    /// The bridge itself (its store, an internal error).
    Bridge,
    /// The org's settings in Entra ID, Dataverse or the bridge.
    Configuration,
    /// Dataverse is unavailable or throttling.
    DynamicsService,
    /// The work item exists; routing it to a representative is Dynamics' part.
    DynamicsRouting,
    /// The widget backend refuses the callbacks.
    WidgetBackend,
}

/// What a handoff's state means for the admin: a one-line `summary`, what to do (`hint`),
/// and which [`Side`] the problem is on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    pub summary: String,
    pub hint: String,
    pub side: Side,
}

/// Explains `h`'s state (see [`Explanation`]); `trouble` is its newest outbox row given up
/// or retrying, which a succeeded handoff reports beside Dynamics' side.
pub fn explain(h: &HandoffRow, trouble: Option<&CallbackTrouble>) -> Explanation {
    let error = h.last_error.as_ref();
    if let (HandoffState::Succeeded, Some(trouble)) = (h.state, trouble) {
        return callback_explanation(h, trouble);
    }
    let (summary, hint, side) = match h.state {
        HandoffState::Succeeded if h.dynamics365_incident_id.is_some() => (
            format!(
                "The incident exists in Dynamics (case {}, incidentid {}).",
                h.dynamics365_ticket_number.as_deref().unwrap_or("?"),
                h.dynamics365_incident_id.as_deref().unwrap_or("?")
            ),
            "If nobody picked the case up, the problem is on the Dynamics side: check the routing rules for incidents (or the queue they land in) and the representatives' capacity.".to_owned(),
            Side::DynamicsRouting,
        ),
        HandoffState::Succeeded => (
            format!(
                "The live work item exists in Dynamics (activityid {}) on workstream {}.",
                h.dynamics365_chat_id.as_deref().unwrap_or("?"),
                h.workstream_id.as_deref().unwrap_or("?")
            ),
            "If no representative received the chat, the problem is on the Dynamics side: check the workstream's routing rules, the representatives' capacity and presence.".to_owned(),
            Side::DynamicsRouting,
        ),
        HandoffState::Skipped => {
            let unsupported = error.is_some_and(|e| e.code == catalog::UNSUPPORTED_CHANNEL.code);
            (
                error.map(|e| e.message.clone()).unwrap_or_default(),
                if unsupported {
                    format!("The session's channel is '{}': only web, sms and whatsapp become live chats, and the org's connection has incidents turned off, so nothing was created.", h.channel)
                } else {
                    error.map(|e| e.hint.clone()).unwrap_or_default()
                },
                Side::None,
            )
        }
        HandoffState::Failed => (
            error.map(|e| e.message.clone()).unwrap_or_default(),
            error.map(|e| e.hint.clone()).unwrap_or_default(),
            side_of(error.map(|e| e.code.as_str())),
        ),
        HandoffState::Queued | HandoffState::Processing => match error {
            Some(e) => (
                format!(
                    "Waiting to try again (attempt {} so far): {}{}",
                    h.attempts,
                    e.message,
                    h.delayed_at.map_or(String::new(), |at| format!(
                        " The widget backend was told at {} that the handoff is delayed.",
                        rfc3339(at)
                    ))
                ),
                e.hint.clone(),
                side_of(Some(&e.code)),
            ),
            None => ("Waiting for the worker.".to_owned(), String::new(), Side::None),
        },
    };
    Explanation {
        summary,
        hint,
        side,
    }
}

/// A succeeded handoff whose callback (or write-back) is retrying or was given up: both
/// sides in one line, e.g. "Dynamics ✓ · widget not told yet (handoff.succeeded), attempt
/// 5, HTTP 500", on the widget backend's side.
fn callback_explanation(h: &HandoffRow, trouble: &CallbackTrouble) -> Explanation {
    let record = match (&h.dynamics365_ticket_number, &h.dynamics365_incident_id) {
        (Some(ticket), _) => format!("case {ticket}"),
        (None, Some(id)) => format!("incident {id}"),
        _ => format!(
            "live work item {}",
            h.dynamics365_chat_id.as_deref().unwrap_or("?")
        ),
    };
    let who = if trouble.event_type == crate::domain::WRITE_BACK_EVENT {
        "the OpenCX session"
    } else {
        "the widget"
    };
    let (state, hint) = if trouble.given_up {
        (
            format!("{who} was not told: given up"),
            outbox_failure(&trouble.event_type).hint_for_org(&h.org_id),
        )
    } else {
        (
            format!("{who} not told yet"),
            format!(
                "It is retried with backoff; {} Resend it now with POST /v1/orgs/{}/sessions/{}/retry.",
                outbox_failure(&trouble.event_type).hint_for_org(&h.org_id),
                h.org_id,
                h.session_id
            ),
        )
    };
    Explanation {
        summary: format!(
            "Dynamics ✓ ({record}) · {state} ({}), attempt {}, {}",
            trouble.event_type, trouble.attempts, trouble.error
        ),
        hint,
        side: Side::WidgetBackend,
    }
}

/// What else an admin may want to know about a handoff, beside its state: the contact
/// match that linked no contact, and a callback that was given up. Each is a catalog entry
/// (`[{code, message, hint, detail?}]`); `trouble` is the newest outbox row in trouble (a
/// callback, or the write-back to the OpenCX session): a note once it was given up.
pub fn notes(h: &HandoffRow, trouble: Option<&CallbackTrouble>) -> Vec<Diagnosis> {
    let contact = h
        .contact_match
        .and_then(contact_note)
        .map(|f| f.diagnose(email_rule(h)));
    let callback = trouble.filter(|t| t.given_up).map(|f| {
        outbox_failure(&f.event_type)
            .diagnose(f.error.clone())
            .for_org(&h.org_id)
    });
    contact.into_iter().chain(callback).collect()
}

fn side_of(code: Option<&str>) -> Side {
    let Some(code) = code else { return Side::None };
    let step = catalog::CATALOG
        .iter()
        .find(|f| f.code == code)
        .map(|f| f.step);
    match step {
        Some(catalog::Step::Input | catalog::Step::Token | catalog::Step::Workstream) => {
            Side::Configuration
        }
        Some(catalog::Step::Dataverse)
            if code == catalog::DATAVERSE_UNAVAILABLE.code
                || code == catalog::DATAVERSE_THROTTLED.code =>
        {
            Side::DynamicsService
        }
        Some(catalog::Step::Dataverse | catalog::Step::WorkItem | catalog::Step::Incident) => {
            Side::Configuration
        }
        Some(catalog::Step::Callback) => Side::WidgetBackend,
        _ => Side::Bridge,
    }
}

/// Which of the org's stored secrets does not open with the process's keys, as a failed
/// `secrets` check (`connection_secret_unreadable`): the webhook secret first (every webhook
/// of the org is answered 503 then), else the connection's client secret.
fn unreadable_secret(
    vault: &Vault,
    org: &OrgRow,
    conn: Option<&crate::store::ConnectionRow>,
) -> Option<Check> {
    let which = if vault.webhook_secret(org).is_err() {
        "the webhook secret: every webhook of this org is answered 503 connection_secret_unreadable"
    } else if conn.is_some_and(|c| vault.client_secret(c).is_err()) {
        "the client secret: every handoff of this org fails with connection_secret_unreadable"
    } else {
        return None;
    };
    let diag = catalog::CONNECTION_SECRET_UNREADABLE
        .diagnose(which.to_owned())
        .for_org(&org.org_id);
    Some(Check::failed("secrets", diag))
}

fn connection_card(
    vault: &Vault,
    org: &OrgRow,
    conn: Option<ConnectionRow>,
    now: i64,
) -> ConnectionCard {
    let org_id = org.org_id.as_str();
    if let Some(unreadable) = unreadable_secret(vault, org, conn.as_ref()) {
        return ConnectionCard {
            status: CardStatus::Failing,
            label: CardStatus::Failing.label(),
            hint: None,
            environment_url: conn.as_ref().map(|c| c.environment_url.clone()),
            workstream_id: conn.as_ref().map(|c| c.workstream_id.clone()),
            workstream_name: None,
            last_checked_at: conn.as_ref().map(|c| rfc3339(c.last_checked_at)),
            failing_check: Some(unreadable),
            warning: None,
            last_success_at: conn.as_ref().and_then(|c| c.last_success_at.map(rfc3339)),
            last_failure: conn.as_ref().and_then(|c| c.last_failure.clone()),
            last_failure_at: conn.as_ref().and_then(|c| c.last_failure_at.map(rfc3339)),
            failing_since: conn.as_ref().and_then(|c| c.failing_since.map(rfc3339)),
            client_secret_expires_at: conn
                .as_ref()
                .and_then(|c| c.client_secret_expires_at.map(rfc3339)),
        };
    }
    let Some(conn) = conn else {
        return ConnectionCard {
            status: CardStatus::NotConnected,
            label: CardStatus::NotConnected.label(),
            hint: Some(catalog::NOT_CONNECTED.hint_for_org(org_id)),
            environment_url: None,
            workstream_id: None,
            workstream_name: None,
            last_checked_at: None,
            failing_check: None,
            warning: None,
            last_success_at: None,
            last_failure: None,
            last_failure_at: None,
            failing_since: None,
            client_secret_expires_at: None,
        };
    };
    let checks: Vec<Check> = serde_json::from_str(&conn.checks).unwrap_or_default();
    let with = |status| checks.iter().find(|c| c.status == status).cloned();
    // The card follows what handoffs meet, both ways: a connection-level failure since the
    // last success turns it Failing whatever the last check said, and a success after a
    // failed check shows that the connection works again.
    let checked = ConnectionStatus::stored(&conn.status);
    let worked_since_check = conn
        .last_success_at
        .is_some_and(|at| at > conn.last_checked_at);
    let (status, failing_check, hint) = match (&conn.failing_since, &conn.last_failure) {
        (Some(_), Some(diag)) => (
            CardStatus::Failing,
            Some(Check::failed("handoffs", diag.clone().for_org(org_id))),
            None,
        ),
        _ if checked == ConnectionStatus::Failing && worked_since_check => (
            CardStatus::Active,
            None,
            Some("The last check failed, but a handoff reached Dynamics after it: the connection works again. Check it again to clear the failed check.".to_owned()),
        ),
        _ => (CardStatus::from(checked), with(CheckStatus::Fail), None),
    };
    ConnectionCard {
        status,
        label: status.label(),
        hint,
        failing_check,
        // A secret about to expire is told whatever the last check found: days pass.
        warning: crate::connection::expiry_warning(conn.client_secret_expires_at, now)
            .map(|diag| Check::warned("token", diag))
            .or_else(|| with(CheckStatus::Warn)),
        client_secret_expires_at: conn.client_secret_expires_at.map(rfc3339),
        workstream_name: checks
            .iter()
            .find(|c| c.name == "workstream")
            .and_then(|c| c.found.clone()),
        environment_url: Some(conn.environment_url),
        workstream_id: Some(conn.workstream_id),
        last_checked_at: Some(rfc3339(conn.last_checked_at)),
        last_success_at: conn.last_success_at.map(rfc3339),
        last_failure: conn.last_failure,
        last_failure_at: conn.last_failure_at.map(rfc3339),
        failing_since: conn.failing_since.map(rfc3339),
    }
}

fn opencx_card(org_id: &str, conn: Option<&OpenCxConnectionRow>) -> OpenCxCard {
    let Some(conn) = conn else {
        return OpenCxCard {
            status: CardStatus::NotConnected,
            label: CardStatus::NotConnected.label(),
            hint: Some(format!(
                "Only needed for OpenCX's own handoff event (thin: the session is fetched from OpenCX) and the write-back; pushed sessions do not need it. {}",
                catalog::OPENCX_NOT_CONNECTED.hint_for_org(org_id)
            )),
            base_url: None,
            last_checked_at: None,
            contact_emails_verified: None,
            failing_check: None,
        };
    };
    let checks: Vec<Check> = serde_json::from_str(&conn.checks).unwrap_or_default();
    let status = CardStatus::from(ConnectionStatus::stored(&conn.status));
    OpenCxCard {
        status,
        label: status.label(),
        hint: None,
        base_url: Some(conn.base_url.clone()),
        last_checked_at: Some(rfc3339(conn.last_checked_at)),
        contact_emails_verified: Some(conn.contact_emails_verified),
        failing_check: checks.into_iter().find(|c| c.status == CheckStatus::Fail),
    }
}

/// What one org's line is made of, read for every org at once.
struct OrgFacts {
    connection: Option<ConnectionRow>,
    opencx: Option<OpenCxConnectionRow>,
    counts: Vec<(HandoffState, i64)>,
    queue: Option<QueueDepth>,
}

fn org_status(vault: &Vault, org: &OrgRow, facts: OrgFacts, now: i64) -> OrgStatus {
    let mut counts = Counts::default();
    for (state, n) in facts.counts {
        *match state {
            HandoffState::Queued => &mut counts.queued,
            HandoffState::Processing => &mut counts.processing,
            HandoffState::Succeeded => &mut counts.succeeded,
            HandoffState::Failed => &mut counts.failed,
            HandoffState::Skipped => &mut counts.skipped,
        } += n;
    }
    let connection = connection_card(vault, org, facts.connection, now);
    let opencx_card = opencx_card(&org.org_id, facts.opencx.as_ref());
    OrgStatus {
        org_id: org.org_id.clone(),
        name: org.name.clone(),
        needs_attention: connection.status != CardStatus::Active
            || opencx_card.status == CardStatus::Failing
            || counts.failed > 0,
        connection,
        opencx: opencx_card,
        write_back: WriteBackPaths::new(
            org.callback_url.is_some(),
            facts.opencx.is_some_and(|c| c.write_back_message.is_some()),
        ),
        counts_24h: counts,
        queue: QueueView {
            depth: facts.queue.as_ref().map_or(0, |q| q.depth),
            oldest_queued_age_ms: facts
                .queue
                .and_then(|q| q.oldest_queued_at)
                .map(|t| (now - t).max(0)),
        },
        recent: None,
        next_before: None,
    }
}

/// A handoff of a page, explained.
fn recent_handoff(listed: &ListedHandoff) -> RecentHandoff {
    let h = &listed.handoff;
    RecentHandoff {
        session_id: h.session_id.clone(),
        channel: h.channel.clone(),
        state: h.state,
        contact_match: h.contact_match,
        dynamics365_chat_id: h.dynamics365_chat_id.clone(),
        dynamics365_incident_id: h.dynamics365_incident_id.clone(),
        dynamics365_ticket_number: h.dynamics365_ticket_number.clone(),
        attempts: h.attempts,
        last_error: h.last_error.clone(),
        notes: notes(h, listed.callback_trouble.as_ref()),
        created_at: rfc3339(h.created_at),
        delayed_at: h.delayed_at.map(rfc3339),
        explanation: explain(h, listed.callback_trouble.as_ref()),
    }
}

/// The status of every org, one line each, or of `filter.org` with a page of its handoffs,
/// at `now` (Unix ms); `vault` tells whether each org's stored secrets still open (a bridge
/// started with another encryption key).
///
/// The same few queries whatever the number of orgs and handoffs: the orgs, their
/// connections, the 24-hour counts and the queues, each for every org at once (indexed), and
/// one keyset page of handoffs for one org.
pub async fn status(
    store: &Store,
    vault: &Vault,
    filter: &Filter,
    now: i64,
) -> Result<StatusReport, StoreError> {
    let only = filter.org.as_deref();
    // Five reads that do not depend on each other, at once (readers do not wait for each
    // other on either backend).
    let orgs = async {
        Ok::<Vec<OrgRow>, StoreError>(match only {
            Some(id) => store.org(id).await?.into_iter().collect(),
            None => store.orgs().await?,
        })
    };
    let connections = async {
        Ok::<Vec<ConnectionRow>, StoreError>(match only {
            Some(id) => store.connection(id).await?.into_iter().collect(),
            None => store.connections().await?,
        })
    };
    let opencx = async {
        Ok::<Vec<OpenCxConnectionRow>, StoreError>(match only {
            Some(id) => store.opencx_connection(id).await?.into_iter().collect(),
            None => store.opencx_connections().await?,
        })
    };
    let (orgs, mut connections, mut opencx, mut counts, queues) = tokio::try_join!(
        orgs,
        connections,
        opencx,
        store.counts_since(only, now - 24 * 3600 * 1000),
        store.queue_depths(only),
    )?;
    let mut queues: std::collections::HashMap<String, QueueDepth> =
        queues.into_iter().map(|q| (q.org_id.clone(), q)).collect();
    let mut take = |org_id: &str| OrgFacts {
        connection: take_by(&mut connections, org_id, |c| &c.org_id),
        opencx: take_by(&mut opencx, org_id, |c| &c.org_id),
        counts: counts.remove(org_id).unwrap_or_default(),
        queue: queues.remove(org_id),
    };
    let mut lines = Vec::with_capacity(orgs.len());
    for org in &orgs {
        let facts = take(&org.org_id);
        lines.push(org_status(vault, org, facts, now));
    }
    if let (Some(line), Some(org)) = (lines.first_mut(), only) {
        let query = HandoffQuery {
            state: filter.state,
            session: filter.session.as_deref(),
            customer: filter.customer.as_deref(),
            before: filter.before.as_ref(),
        };
        let page = store.recent_handoffs(org, &query, filter.limit).await?;
        line.next_before = page.next_before.map(|c| c.to_string());
        line.recent = Some(page.handoffs.iter().map(recent_handoff).collect());
    }
    // A failing connection first (nothing of that org gets through), then the others that
    // need attention, then the healthy ones; by name within each.
    let rank = |o: &OrgStatus| {
        let failing =
            o.connection.status == CardStatus::Failing || o.opencx.status == CardStatus::Failing;
        match (failing, o.needs_attention) {
            (true, _) => 0,
            (false, true) => 1,
            (false, false) => 2,
        }
    };
    lines.sort_by_cached_key(|o| (rank(o), o.name.to_lowercase(), o.org_id.clone()));
    Ok(StatusReport {
        generated_at: rfc3339(now),
        orgs: lines,
    })
}

/// Removes and returns the row of `rows` whose key is `org_id` (rows sorted by it).
fn take_by<T>(rows: &mut Vec<T>, org_id: &str, key: impl Fn(&T) -> &String) -> Option<T> {
    rows.binary_search_by(|r| key(r).as_str().cmp(org_id))
        .ok()
        .map(|i| rows.remove(i))
}

/// The catalog entry that explains a contact match the admin may want to act on
/// (`ambiguous`, `not_found`, `unverified`); `None` for a match that needs no words.
/// Which rule decided whether the visitor's email counts as verified, in words (the contact
/// note's detail); `None` without an email or a readable payload.
fn email_rule(h: &HandoffRow) -> Option<String> {
    if h.payload_version != QUEUED_PAYLOAD_VERSION {
        return None;
    }
    let queued: QueuedHandoff = serde_json::from_str(&h.payload).ok()?;
    let customer = queued.customer;
    customer.email.as_ref()?;
    Some(customer.email_rule.describe(customer.email_verified))
}

fn contact_note(matched: ContactMatch) -> Option<Failure> {
    match matched {
        ContactMatch::Ambiguous => Some(catalog::CONTACT_AMBIGUOUS),
        ContactMatch::NotFound => Some(catalog::CONTACT_NOT_FOUND),
        ContactMatch::Unverified => Some(catalog::EMAIL_UNVERIFIED),
        ContactMatch::Linked | ContactMatch::Created | ContactMatch::Anonymous => None,
    }
}
