//! The handoff job: contact → live work item → write-back, and the worker that runs it.
//!
//! One attempt reads the stored session, resolves the contact by verified email, creates the
//! live work item with its deterministic key, and returns an [`Outcome`] that the store
//! writes in one transaction with the attempt's events and the callback (outbox). This
//! module knows nothing about HTTP routes.

pub mod callback;
pub mod enrich;
pub mod incident;
pub mod job;
pub mod retry;
pub mod work_item;
pub mod worker;

use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use crate::clock::{millis, Clock};
use crate::domain::catalog::{self, Diagnosis};
use crate::domain::handoff::QueuedMessage;
use crate::domain::{ContactMatch, EventKind};
use crate::domain::{Ended, Enrichment, NewCallback, NewEvent, Outcome};
use crate::domain::{HandoffRequest, QueuedHandoff, ThinHandoff};
use crate::domain::{OrgId, WorkstreamId};
use crate::domain::{QUEUED_PAYLOAD_VERSION, THIN_PAYLOAD_VERSION};
use crate::dynamics::RetryClass;
use crate::dynamics::{CreateOutcome, DataverseError, Explained};
use crate::store::{Claim, HandoffRow, OpenCxConnectionRow, OrgRow};
use enrich::Stop;
use incident::{IncidentStop, NewIncident};
use job::{Connect, HandoffDataverse, JobContext};
use retry::RetryPolicy;

/// A wait for a connection to be saved: no time of its own (saving the connection makes the
/// org's queued handoffs due at once); the patience and the chat expiry end it.
const PARKED: i64 = i64::MAX;

/// What one attempt has learned so far; carried into whichever outcome ends it.
struct Progress<'a> {
    events: Vec<NewEvent>,
    contact_match: Option<ContactMatch>,
    contact_id: Option<Uuid>,
    /// Set when this attempt tells the widget backend the handoff is delayed.
    delayed_at: Option<i64>,
    /// Set when the attempt met a pause after a 429 (until then).
    paused_until: Option<i64>,
    /// Set when the attempt fetched a thin event's session.
    enriched: Option<Enrichment>,
    /// Set when the work item exists and the session is to be told.
    write_back: Option<NewCallback>,
    /// When the attempt started.
    started: Instant,
    clock: &'a Clock,
}

impl<'a> Progress<'a> {
    fn new(clock: &'a Clock) -> Self {
        Self {
            events: Vec::new(),
            contact_match: None,
            contact_id: None,
            delayed_at: None,
            paused_until: None,
            enriched: None,
            write_back: None,
            started: Instant::now(),
            clock,
        }
    }

    /// The outcome `ended`, with what the attempt learned and `callback`.
    fn end(self, ended: Ended, callback: Option<NewCallback>) -> Outcome {
        Outcome {
            ended,
            contact_match: self.contact_match,
            contact_id: self.contact_id,
            events: self.events,
            callback,
            write_back: self.write_back,
            enriched: self.enriched,
            delayed_at: self.delayed_at,
            paused_until: self.paused_until,
        }
    }

    fn event(&mut self, kind: EventKind, detail: serde_json::Value) {
        self.events.push(NewEvent {
            at: self.clock.now_ms(),
            kind,
            detail,
        });
    }
}

/// Runs one attempt of a claimed handoff and says how it ended. Never panics on remote
/// errors; every failure becomes a diagnosed outcome.
pub async fn attempt<C: Connect>(ctx: &JobContext<'_, C>, claim: &Claim) -> Outcome {
    let handoff = &claim.handoff;
    let mut progress = Progress::new(ctx.clock);
    progress.event(
        EventKind::AttemptStarted,
        json!({ "attempt": handoff.attempts }),
    );

    let org = match ctx.store.org(&handoff.org_id).await {
        Ok(Some(org)) => org,
        Ok(None) => {
            return fail(
                claim,
                None,
                progress,
                catalog::PAYLOAD_UNREADABLE.diagnose("the org was deleted".to_owned()),
            )
        }
        Err(e) => return retry_later(ctx, claim, None, progress, store_trouble(&e), None),
    };
    let opencx = match ctx.store.opencx_connection(&handoff.org_id).await {
        Ok(conn) => conn,
        Err(e) => return retry_later(ctx, claim, Some(&org), progress, store_trouble(&e), None),
    };

    let decoded = match handoff.redacted_at {
        Some(_) => Err("the session was removed when its retention period ended".to_owned()),
        None => decode(handoff.payload_version, &handoff.org_id, &handoff.payload),
    };
    let (request, history) = match decoded {
        Ok(Stored::Ready(request, history)) => (request, history),
        Ok(Stored::Thin(thin)) => {
            match fetch_session(ctx, &org, opencx.as_ref(), &thin, &mut progress).await {
                Ok(fetched) => fetched,
                Err(stop) => return stopped(ctx, claim, &org, progress, stop),
            }
        }
        Err(detail) => {
            return fail(
                claim,
                None,
                progress,
                catalog::PAYLOAD_UNREADABLE.diagnose(detail),
            )
        }
    };

    // Web, SMS and WhatsApp become live work items; every other channel an incident.
    let chat = work_item::stream_source(&request.channel);

    // Past the chat expiry nobody waits in the chat any more: give up, so the widget can
    // offer another way. (An incident is not a chat anybody waits in: only the retry window
    // ends it.)
    let waited = ctx.clock.now_ms() - window_start(ctx, claim);
    if chat.is_some() && waited >= millis(ctx.retry.chat_expiry) {
        let diag = catalog::CHAT_EXPIRED.diagnose(format!(
            "no live work item {} minutes after the first attempt; last error: {}",
            waited / 60_000,
            handoff
                .last_error
                .as_ref()
                .map_or("none", |e| e.code.as_str())
        ));
        return fail(claim, Some(&org), progress, diag);
    }

    let conn = match ctx.store.connection(&handoff.org_id).await {
        Ok(Some(conn)) => conn,
        // Parked, not retried: saving the connection makes it due at once.
        Ok(None) => {
            let reason = catalog::NOT_CONNECTED
                .diagnose(None)
                .for_org(&handoff.org_id);
            return wait(ctx, claim, &org, progress, reason, PARKED);
        }
        Err(e) => return retry_later(ctx, claim, Some(&org), progress, store_trouble(&e), None),
    };
    let (creds, workstream) =
        match crate::connection::orgs::credentials(ctx.vault, &conn, ctx.allow_insecure) {
            Ok(c) => c,
            Err(diag) => return fail(claim, Some(&org), progress, diag),
        };
    let incidents = match crate::connection::incidents::stored(conn.incidents.as_deref()) {
        Ok(settings) => settings,
        Err(diag) => return fail(claim, Some(&org), progress, diag),
    };
    if chat.is_none() && !incidents.enabled {
        let channel = request.channel.as_str();
        progress.event(
            EventKind::Skipped,
            json!({ "code": catalog::UNSUPPORTED_CHANNEL.code, "channel": channel }),
        );
        let diag = catalog::UNSUPPORTED_CHANNEL.diagnose(format!(
            "channel '{channel}'; the connection has incidents.enabled = false"
        ));
        return progress.end(Ended::Skipped(diag), None);
    }
    let client = ctx.dataverse.connect(creds);

    if !reuse_contact(handoff, &mut progress) {
        if let Err(err) = resolve_contact(
            &client,
            &request,
            conn.create_contact_if_missing,
            &ctx.retry,
            &mut progress,
        )
        .await
        {
            let explained = err.explain();
            return dataverse_failed(ctx, claim, &org, "contact", progress, &err, explained);
        }
    }

    let write_back = opencx.and_then(|c| c.write_back_message);
    let Some(source) = chat else {
        let ended =
            incident::hand_off(ctx, &client, &request, &history, &incidents, &mut progress).await;
        return match ended {
            Ok(created) => incident_created(claim, &org, progress, created, write_back),
            Err(IncidentStop::NoCustomer(diag)) => fail(claim, Some(&org), progress, diag),
            Err(IncidentStop::Dataverse {
                step,
                err,
                explained,
            }) => dataverse_failed(ctx, claim, &org, step, progress, &err, explained),
        };
    };

    let activityid = work_item::activity_id(&request.org_id, &request.session_id);
    let body = work_item::create_body(
        &request,
        source,
        activityid,
        workstream,
        progress.contact_id,
        &history,
    );
    let started = Instant::now();
    let created = quickly(&ctx.retry, "work_item", &mut progress, || {
        client.create_live_work_item(&body)
    });
    match created.await {
        Ok(created) => {
            progress.event(
                EventKind::WorkItemCreated,
                json!({
                    "activityid": activityid,
                    "already_existed": created == CreateOutcome::AlreadyExisted,
                    "workstream_id": workstream.to_string(),
                    "duration_ms": started.elapsed().as_millis() as u64,
                }),
            );
            succeeded(claim, &org, progress, activityid, workstream, write_back)
        }
        Err(err) => {
            let explained = err.explain_work_item();
            dataverse_failed(ctx, claim, &org, "work_item", progress, &err, explained)
        }
    }
}

/// A stored payload, read back.
enum Stored {
    /// The bridge's own [`QueuedHandoff`], as a validated request and its transcript.
    Ready(HandoffRequest, Vec<QueuedMessage>),
    /// A thin event whose session is still to be fetched from OpenCX.
    Thin(ThinHandoff),
}

/// Reads a stored payload: the bridge's own [`QueuedHandoff`] or a [`ThinHandoff`]. Older
/// shapes were upgraded at startup (`webhook::upgrade`); one still here did not validate
/// then.
fn decode(version: i64, org_id: &str, payload: &str) -> Result<Stored, String> {
    let org = OrgId::parse(org_id)?;
    match version {
        QUEUED_PAYLOAD_VERSION => {
            let mut queued: QueuedHandoff =
                serde_json::from_str(payload).map_err(|e| e.to_string())?;
            let history = std::mem::take(&mut queued.history);
            Ok(Stored::Ready(queued.into_request(&org)?, history))
        }
        THIN_PAYLOAD_VERSION => serde_json::from_str::<ThinHandoff>(payload)
            .map(Stored::Thin)
            .map_err(|e| e.to_string()),
        1 => Err("the session was stored by an older version and did not pass validation when this version started (its log names the field)".to_owned()),
        other => Err(format!(
            "payload version {other} is not known to this build"
        )),
    }
}

/// Fetches a thin event's session with the org's OpenCX connection (`conn`; without one
/// the handoff waits for it, parked) and keeps what was fetched on `progress`, so the
/// outcome stores it in place of the event.
async fn fetch_session<C>(
    ctx: &JobContext<'_, C>,
    org: &OrgRow,
    conn: Option<&OpenCxConnectionRow>,
    thin: &ThinHandoff,
    progress: &mut Progress<'_>,
) -> Result<(HandoffRequest, Vec<QueuedMessage>), Stop> {
    let Some(conn) = conn else {
        return Err(Stop::Wait(
            catalog::OPENCX_NOT_CONNECTED.diagnose(None),
            None,
        ));
    };
    let (base, key) = crate::connection::orgs::opencx_access(ctx.vault, conn, ctx.allow_insecure)
        .map_err(Stop::Fail)?;
    let org_id = OrgId::parse(&org.org_id)
        .map_err(|why| Stop::Fail(catalog::PAYLOAD_UNREADABLE.diagnose(why)))?;
    let client = ctx.opencx.client(base, &key);
    let started = Instant::now();
    let id = thin.session_id.as_str();
    let fetched = async {
        let policy = &ctx.retry;
        let session = quickly(policy, "opencx_session", progress, || client.session(id))
            .await
            .map_err(|e| Stop::of(&e))?;
        let history = quickly(policy, "opencx_history", progress, || client.history(id))
            .await
            .map_err(|e| Stop::of(&e))?;
        let verified = conn.contact_emails_verified;
        enrich::fetched(&org_id, thin, session, history, verified).map_err(Stop::Fail)
    }
    .await;
    match fetched {
        Ok(fetched) => {
            progress.event(
                EventKind::Enriched,
                json!({
                    "channel": fetched.channel,
                    "history_items": fetched.history.len(),
                    "history_truncated": fetched.history_truncated,
                    "email_rule": fetched.request.customer.email_rule,
                    "duration_ms": started.elapsed().as_millis() as u64,
                }),
            );
            progress.enriched = Some(Enrichment {
                payload: fetched.payload,
                channel: fetched.channel,
            });
            Ok((fetched.request, fetched.history))
        }
        Err(stop) => {
            if let Stop::Retry(diag, _) | Stop::Fail(diag) = &stop {
                progress.event(
                    EventKind::AttemptFailed,
                    json!({
                        "step": "opencx_session",
                        "outcome": if matches!(stop, Stop::Retry(..)) { "transient" } else { "permanent" },
                        "code": diag.code,
                        "error_detail": diag.detail,
                        "transient": matches!(stop, Stop::Retry(..)),
                        "duration_ms": started.elapsed().as_millis() as u64,
                    }),
                );
            }
            Err(stop)
        }
    }
}

/// The outcome of a fetch that got no session (hints name the org's routes).
fn stopped<C>(
    ctx: &JobContext<'_, C>,
    claim: &Claim,
    org: &OrgRow,
    progress: Progress<'_>,
    stop: Stop,
) -> Outcome {
    match stop.for_org(&org.org_id) {
        Stop::Wait(reason, None) => wait(ctx, claim, org, progress, reason, PARKED),
        Stop::Wait(reason, Some(pause)) => {
            let until = ctx.clock.now_ms().saturating_add(millis(pause));
            wait(ctx, claim, org, progress, reason, until)
        }
        Stop::Retry(diag, retry_after) => {
            retry_later(ctx, claim, Some(org), progress, diag, retry_after)
        }
        Stop::Fail(diag) => fail(claim, Some(org), progress, diag),
    }
}

/// Takes the contact an earlier attempt of this handoff resolved, kept on the row (a
/// replay clears it), and says so on the timeline (`contact_resolved` with `reused`). A
/// retry after a failed create, a 429 or a pause then sends no second lookup, one request
/// less against an environment that may be throttled. `false` when there is none to take.
fn reuse_contact(handoff: &HandoffRow, progress: &mut Progress<'_>) -> bool {
    let Some(matched) = handoff.contact_match else {
        return false;
    };
    let id = match handoff.contact_id.as_deref().map(Uuid::parse_str) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return false,
        None if matches!(matched, ContactMatch::Linked | ContactMatch::Created) => return false,
        None => None,
    };
    progress.event(
        EventKind::ContactResolved,
        json!({ "contact_match": matched.as_str(), "contact_id": id, "reused": true }),
    );
    progress.contact_match = Some(matched);
    progress.contact_id = id;
    true
}

/// Sets `contact_match` (and `contact_id`) on `progress`. Only a verified email is looked up;
/// `$top=2` is enough to tell one match from several.
async fn resolve_contact(
    client: &impl HandoffDataverse,
    request: &HandoffRequest,
    create_if_missing: bool,
    policy: &RetryPolicy,
    progress: &mut Progress<'_>,
) -> Result<(), DataverseError> {
    let customer = &request.customer;
    let Some(email) = &customer.verified_email else {
        progress.contact_match = Some(if customer.email.is_some() {
            ContactMatch::Unverified
        } else {
            ContactMatch::Anonymous
        });
        return Ok(());
    };
    let started = Instant::now();
    let found = quickly(policy, "contact", progress, || {
        client.find_contacts_by_email(email.as_str())
    })
    .await?;
    let (matched, id) = match found.as_slice() {
        [one] => (ContactMatch::Linked, Some(*one)),
        [] if create_if_missing => {
            let org = &request.org_id;
            let id = work_item::contact_id(org, email.as_str());
            let body = work_item::contact_body(
                id,
                customer.name.as_deref(),
                email.as_str(),
                customer.phone.as_deref(),
            );
            quickly(policy, "contact", progress, || client.create_contact(&body)).await?;
            (ContactMatch::Created, Some(id))
        }
        [] => (ContactMatch::NotFound, None),
        _ => (ContactMatch::Ambiguous, None),
    };
    progress.event(
        EventKind::ContactResolved,
        json!({
            "contact_match": matched.as_str(),
            "contact_id": id,
            "email_rule": customer.email_rule,
            "duration_ms": started.elapsed().as_millis() as u64,
        }),
    );
    progress.contact_match = Some(matched);
    progress.contact_id = id;
    Ok(())
}

/// Sends an idempotent request, and sends it again (at most `policy.quick_retries` times,
/// after `policy.quick_delay`) while it fails transiently without a `Retry-After`: a blip
/// costs a fraction of a second instead of a backoff step. Each resend is on the timeline.
async fn quickly<T, E, F, Fut>(
    policy: &RetryPolicy,
    step: &'static str,
    progress: &mut Progress<'_>,
    mut request: F,
) -> Result<T, E>
where
    E: QuickResend,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut resent = 0;
    loop {
        let err = match request().await {
            Ok(answer) => return Ok(answer),
            Err(err) => err,
        };
        let Some(delay) = policy.quick_delay(resent).filter(|_| err.resend_quickly()) else {
            return Err(err);
        };
        progress.event(
            EventKind::RequestRetried,
            json!({
                "step": step,
                "code": err.code(),
                "http_status": err.http_status(),
                "delay_ms": delay.as_millis() as u64,
            }),
        );
        tokio::time::sleep(delay).await;
        resent += 1;
    }
}

/// A failure [`quickly`] may resend after: transient, and without a `Retry-After` (a
/// service that names a time is waited for between attempts instead).
trait QuickResend {
    fn resend_quickly(&self) -> bool;
    /// The catalog code, for the timeline.
    fn code(&self) -> String;
    fn http_status(&self) -> Option<u16>;
}

impl QuickResend for DataverseError {
    fn resend_quickly(&self) -> bool {
        matches!(
            self.explain().class,
            RetryClass::Transient { retry_after: None }
        )
    }
    fn code(&self) -> String {
        self.explain().diagnosis.code
    }
    fn http_status(&self) -> Option<u16> {
        self.status()
    }
}

impl QuickResend for crate::opencx::OpenCxError {
    fn resend_quickly(&self) -> bool {
        self.is_transient() && self.retry_after().is_none()
    }
    fn code(&self) -> String {
        self.diagnose().code
    }
    fn http_status(&self) -> Option<u16> {
        self.status()
    }
}

fn store_trouble(err: &crate::store::StoreError) -> Diagnosis {
    catalog::STORE_UNAVAILABLE.diagnose(err.to_string())
}

/// Turns a Dataverse failure at `step`, explained as `explained`, into a retry or a
/// failure.
fn dataverse_failed<C>(
    ctx: &JobContext<'_, C>,
    claim: &Claim,
    org: &OrgRow,
    step: &'static str,
    mut progress: Progress<'_>,
    err: &DataverseError,
    explained: Explained,
) -> Outcome {
    let Explained {
        diagnosis: diag,
        class,
    } = explained;
    progress.event(EventKind::AttemptFailed,
        json!({
            "step": step,
            "outcome": if matches!(class, RetryClass::Transient { .. }) { "transient" } else { "permanent" },
            "code": diag.code,
            "http_status": err.status(),
            "dataverse_code": err.code(),
            // What Dataverse said, kept on the timeline: a replay that succeeds later
            // replaces `last_error`, not this.
            "error_detail": diag.detail,
            "transient": matches!(class, RetryClass::Transient { .. }),
            "duration_ms": progress.started.elapsed().as_millis() as u64,
        }),
    );
    match class {
        RetryClass::Transient { retry_after } => {
            retry_later(ctx, claim, Some(org), progress, diag, retry_after)
        }
        RetryClass::NotSent { wait: pause } => {
            let until = ctx.clock.now_ms().saturating_add(millis(pause));
            progress.paused_until = Some(until);
            wait(ctx, claim, org, progress, diag, until)
        }
        RetryClass::Permanent => fail(claim, Some(org), progress, diag),
    }
}

/// Back to `queued` until `until` (Unix ms, or [`PARKED`] to wait for a connection) without
/// counting the attempt: nothing was sent, so nothing failed. The wait ends early for the
/// patience and the chat expiry (see [`waiting_person`]).
fn wait<C>(
    ctx: &JobContext<'_, C>,
    claim: &Claim,
    org: &OrgRow,
    mut progress: Progress<'_>,
    reason: Diagnosis,
    until: i64,
) -> Outcome {
    let parked = until == PARKED;
    let (until, callback) =
        waiting_person(ctx, claim, Some(org), &mut progress, &reason, until, parked);
    progress.event(
        EventKind::Waiting,
        json!({
            "code": reason.code,
            "until": crate::clock::rfc3339(until),
            "parked": parked,
        }),
    );
    progress.end(Ended::Waiting { until, reason }, callback)
}

/// Where the current retry window started (Unix ms): the first attempt, or the last replay.
fn window_start<C>(ctx: &JobContext<'_, C>, claim: &Claim) -> i64 {
    claim
        .handoff
        .first_attempt_at
        .unwrap_or_else(|| ctx.clock.now_ms())
}

/// Whether `handoff` is (or may turn out to be) a chat, which the chat expiry ends: its
/// channel is web, sms or whatsapp, or not known yet (a thin event not fetched). An
/// incident is not a chat anybody waits in, so its retries are not brought forward to the
/// expiry (they would fall due at once, again and again, past it).
fn becomes_chat(handoff: &HandoffRow) -> bool {
    handoff.channel == crate::domain::CHANNEL_NOT_FETCHED
        || crate::domain::Channel::parse(&handoff.channel).is_chat()
}

/// For a handoff that will try again at `next` (Unix ms) because of `reason`: the time to
/// try again, brought forward, for a chat ([`becomes_chat`]), to the chat expiry (the next
/// attempt then gives up before sending anything) and, when `to_patience`, to the end of the patience if the widget has
/// not been told yet (never past a service's `Retry-After`: only waits that are not one
/// pass `to_patience`); and the `handoff.delayed` callback once the patience has passed
/// (once per handoff; the record's `delayed_at` says it was sent).
fn waiting_person<C>(
    ctx: &JobContext<'_, C>,
    claim: &Claim,
    org: Option<&OrgRow>,
    progress: &mut Progress<'_>,
    reason: &Diagnosis,
    next: i64,
    to_patience: bool,
) -> (i64, Option<NewCallback>) {
    let now = ctx.clock.now_ms();
    let start = window_start(ctx, claim);
    let mut next = if becomes_chat(&claim.handoff) {
        next.min(start.saturating_add(millis(ctx.retry.chat_expiry)))
    } else {
        next
    };
    let (Some(org), None) = (org, claim.handoff.delayed_at) else {
        return (next, None);
    };
    let patience_ends = start.saturating_add(millis(ctx.retry.delayed_after));
    if now < patience_ends {
        return (
            if to_patience {
                next.min(patience_ends)
            } else {
                next
            },
            None,
        );
    }
    next = next.max(now);
    progress.delayed_at = Some(now);
    progress.event(
        EventKind::Delayed,
        json!({ "code": reason.code, "next_attempt_at": crate::clock::rfc3339(next) }),
    );
    let callback = callback::delayed_event(org, &claim.handoff, reason, next, start);
    (next, callback)
}

/// The outcome of an attempt that panicked (a bug, or an upstream value nothing guarded
/// against): recorded as a transient failure with `internal_error`, so the handoff is
/// retried with backoff and ends with `retries_exhausted` if it keeps happening, instead of
/// staying `processing` unseen. `what` is the panic's message.
pub fn panicked<C>(ctx: &JobContext<'_, C>, claim: &Claim, what: &str) -> Outcome {
    let mut progress = Progress::new(ctx.clock);
    progress.event(
        EventKind::AttemptPanicked,
        json!({ "code": catalog::INTERNAL_ERROR.code }),
    );
    let diag = catalog::INTERNAL_ERROR.diagnose(format!("the attempt panicked: {what}"));
    retry_later(ctx, claim, None, progress, diag, None)
}

/// Back to `queued` with a later `next_attempt_at`, or `failed` with `retries_exhausted`
/// once the policy's window has passed.
fn retry_later<C>(
    ctx: &JobContext<'_, C>,
    claim: &Claim,
    org: Option<&OrgRow>,
    mut progress: Progress<'_>,
    diag: Diagnosis,
    retry_after: Option<std::time::Duration>,
) -> Outcome {
    let now = ctx.clock.now_ms();
    let policy = ctx.retry;
    let first = window_start(ctx, claim);
    if now - first >= millis(policy.give_up_after) {
        let exhausted = catalog::RETRIES_EXHAUSTED.diagnose(format!(
            "last error: {} ({})",
            diag.code,
            diag.detail.as_deref().unwrap_or(&diag.message)
        ));
        return fail(claim, org, progress, exhausted);
    }
    let attempts = u32::try_from(claim.handoff.attempts).unwrap_or(u32::MAX);
    let since_first = std::time::Duration::from_millis(u64::try_from(now - first).unwrap_or(0));
    let delay = policy.delay(attempts, since_first, retry_after);
    let (next, callback) = waiting_person(
        ctx,
        claim,
        org,
        &mut progress,
        &diag,
        now.saturating_add(millis(delay)),
        retry_after.is_none(),
    );
    progress.event(EventKind::RetryScheduled,
        json!({ "code": diag.code, "delay_ms": delay.as_millis() as u64, "retry_after_s": retry_after.map(|d| d.as_secs()) }),
    );
    progress.end(
        Ended::RetryScheduled {
            next_attempt_at: next,
            error: diag,
        },
        callback,
    )
}

fn fail(
    claim: &Claim,
    org: Option<&OrgRow>,
    mut progress: Progress<'_>,
    diag: Diagnosis,
) -> Outcome {
    progress.event(EventKind::Failed, json!({ "code": diag.code }));
    let callback = org.and_then(|org| callback::failed_event(org, &claim.handoff, &diag));
    progress.end(Ended::Failed(diag), callback)
}

/// The live work item exists: `succeeded`, with the `handoff.succeeded` callback and, with
/// a `write_back` message, the write-back to the OpenCX session.
fn succeeded(
    claim: &Claim,
    org: &OrgRow,
    mut progress: Progress<'_>,
    chat_id: Uuid,
    workstream: WorkstreamId,
    write_back: Option<String>,
) -> Outcome {
    let session_id = &claim.handoff.session_id;
    let custom_data = json!({ "dynamics365_chat_id": chat_id.to_string() });
    progress.write_back = write_back_callback(org, session_id, write_back, custom_data);
    progress.event(
        EventKind::Succeeded,
        json!({ "dynamics365_chat_id": chat_id }),
    );
    let callback = callback::succeeded_event(
        org,
        &claim.handoff,
        &chat_id.to_string(),
        progress.contact_id,
        progress.contact_match,
        Some(workstream),
        progress.clock.now_ms(),
    );
    progress.end(
        Ended::Succeeded {
            dynamics365_chat_id: chat_id,
            workstream_id: workstream.uuid(),
        },
        callback,
    )
}

/// The write-back to the OpenCX session (`opencx.write_back` in the outbox) carrying
/// `custom_data`, when the org's OpenCX connection has a write-back `message`.
fn write_back_callback(
    org: &OrgRow,
    session_id: &str,
    message: Option<String>,
    custom_data: serde_json::Value,
) -> Option<NewCallback> {
    message.map(|message| NewCallback {
        webhook_id: callback::webhook_id(&org.org_id, session_id, crate::domain::WRITE_BACK_EVENT),
        event_type: crate::domain::WRITE_BACK_EVENT,
        payload: enrich::write_back_payload(session_id, &message, custom_data),
    })
}

/// The incident exists: `succeeded` with its id and case number, the `handoff.succeeded`
/// callback and, with a `write_back` message, the write-back of
/// `dynamics365_incident_id` and `dynamics365_ticket_number` to the OpenCX session (the
/// names OpenCX's own integration puts on the session).
fn incident_created(
    claim: &Claim,
    org: &OrgRow,
    mut progress: Progress<'_>,
    created: NewIncident,
    write_back: Option<String>,
) -> Outcome {
    let session_id = &claim.handoff.session_id;
    let ids = json!({
        "dynamics365_incident_id": created.incidentid.to_string(),
        "dynamics365_ticket_number": created.ticketnumber,
    });
    progress.write_back = write_back_callback(org, session_id, write_back, ids.clone());
    progress.event(EventKind::Succeeded, ids);
    let callback = callback::incident_event(
        org,
        &claim.handoff,
        &created,
        progress.contact_id,
        progress.contact_match,
        progress.clock.now_ms(),
    );
    progress.end(
        Ended::IncidentCreated {
            dynamics365_incident_id: created.incidentid,
            dynamics365_ticket_number: created.ticketnumber,
        },
        callback,
    )
}

#[cfg(test)]
mod tests;
