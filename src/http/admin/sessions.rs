//! Handoff records (`/v1/orgs/{org_id}/sessions…`), replay, and `GET /v1/status`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::diagnostics::StatusReport;
use crate::domain::HandoffState;
use crate::http::error::ApiError;
use crate::http::extract::{OrgIdPath, SessionPath};
use crate::http::lookup::{existing_handoff, existing_org, list_options, ListQuery, StatusQuery};
use crate::http::openapi::{PathProblems, ORG_ID_DOC, SESSION_ID_DOC};
use crate::http::state::AppState;
use crate::http::views::{HandoffRecord, HandoffSummary};
use crate::store::{HandoffRow, Replayed};

/// Recent handoffs of an org, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<HandoffSummary>,
    /// The cursor of the next, older page (`before=`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// What a replay put back in the queues.
#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    /// The handoff replayed (`POST …/sessions/{session_id}/retry` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub requeued_handoffs: u64,
    pub requeued_callbacks: u64,
}

/// `GET /v1/orgs/{org_id}/sessions/{session_id}`: the handoff record with its timeline.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/sessions/{session_id}", tag = "handoffs", params(("org_id" = String, Path, description = ORG_ID_DOC), ("session_id" = String, Path, description = SESSION_ID_DOC)),
    responses((status = 200, description = "The handoff record with `events` and `callbacks`", body = HandoffRecord), PathProblems),
    security(("admin_token" = [])))]
pub async fn get_session(
    State(ctx): State<Arc<AppState>>,
    SessionPath(org_id, session_id): SessionPath,
) -> Result<Json<HandoffRecord>, ApiError> {
    let org = existing_org(&ctx, &org_id).await?;
    let handoff = existing_handoff(&ctx, &org, &session_id).await?;
    let events = ctx.store.events(&handoff.handoff_id).await?;
    let callbacks = ctx.store.callbacks(&handoff.handoff_id).await?;
    Ok(Json(HandoffRecord::new(&handoff, &events, &callbacks)))
}

/// `GET /v1/status?org=&state=&session=&customer=&before=&limit=`: per org, the connection
/// card, counts over 24 h and the queue (`diagnostics.rs`); with `org`, a page of its
/// handoffs too, newest first, each explained, and `next_before` for the next page.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    params(
        ("org" = Option<String>, Query, description = "Only this org, with a page of its handoffs (`recent`)"),
        ("state" = Option<String>, Query, description = "With `org`: queued, processing, succeeded, failed or skipped"),
        ("session" = Option<String>, Query, description = "With `org`: session ids containing this text"),
        ("customer" = Option<String>, Query, description = "With `org`: customers whose name or email contains this text (ASCII case ignored)"),
        ("before" = Option<String>, Query, description = "With `org`: the page after this cursor (`next_before` of the page before)"),
        ("limit" = Option<u32>, Query, description = "With `org`: handoffs per page, 1–500 (default 20)"),
    ),
    responses((status = 200, description = "Per org: the connection card, counts over 24 h, the queue; with `org`, a page of its handoffs", body = StatusReport),
        (status = 422, description = "`validation_failed`: `state`, `before` or `limit`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn status(
    State(ctx): State<Arc<AppState>>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<StatusReport>, ApiError> {
    let filter = query.filter()?;
    Ok(Json(
        crate::diagnostics::status(&ctx.store, &ctx.vault, &filter, ctx.clock.now_ms()).await?,
    ))
}

/// `GET /v1/orgs/{org_id}/sessions?state=…&before=…&limit=…`: a page of the org's handoffs,
/// newest first (`limit` 1–500, default 50), and `next_before` for the next page.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/sessions", tag = "handoffs",
    params(("org_id" = String, Path, description = ORG_ID_DOC),
        ("state" = Option<String>, Query, description = "queued, processing, succeeded, failed or skipped"),
        ("before" = Option<String>, Query, description = "The page after this cursor (`next_before` of the page before)"),
        ("limit" = Option<u32>, Query, description = "1–500 (default 50)"),
    ),
    responses((status = 200, description = "Newest first", body = SessionList), PathProblems),
    security(("admin_token" = [])))]
pub async fn list_sessions(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(org_id): OrgIdPath,
    Query(query): Query<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    let org = existing_org(&ctx, &org_id).await?;
    let (state, before, limit) = list_options(
        query.state.as_deref(),
        query.before.as_deref(),
        query.limit.as_deref(),
        50,
    )?;
    let query = crate::store::HandoffQuery {
        state,
        before: before.as_ref(),
        ..Default::default()
    };
    let page = ctx
        .store
        .recent_handoffs(&org.org_id, &query, limit)
        .await?;
    Ok(Json(SessionList {
        sessions: page
            .handoffs
            .iter()
            .map(|r| HandoffSummary::new(&r.handoff, r.callback_trouble.as_ref()))
            .collect(),
        next_before: page.next_before.map(|c| c.to_string()),
    }))
}

/// `POST /v1/orgs/{org_id}/sessions/{session_id}/retry`: re-queues a `failed` handoff, and
/// the session's failed callbacks, and resends now a callback still retrying after a refused
/// delivery (202); a `queued` handoff waiting for a later attempt is
/// made due now (202). The same deterministic keys are used, so a replay cannot create a
/// second live work item or a second logical callback. 409 when nothing failed or waits.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/sessions/{session_id}/retry", tag = "handoffs", params(("org_id" = String, Path, description = ORG_ID_DOC), ("session_id" = String, Path, description = SESSION_ID_DOC)),
    responses(
        (status = 202, description = "Re-queued", body = Requeued),
        (status = 409, description = "`nothing_to_retry` (succeeded, skipped or running now), or `session_redacted` (the retention period removed the session)", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        PathProblems,
    ), security(("admin_token" = [])))]
pub async fn retry_session(
    State(ctx): State<Arc<AppState>>,
    SessionPath(org_id, session_id): SessionPath,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let org = existing_org(&ctx, &org_id).await?;
    let handoff = existing_handoff(&ctx, &org, &session_id).await?;
    let replayed = retry_handoff(&ctx, &handoff).await?;
    Ok(requeued(&handoff, replayed))
}

/// What the retry route does, for it and the status page's button: re-queues `handoff` if
/// it failed, resends its failed or still-retrying callbacks, makes a queued one due now,
/// and wakes the worker. `nothing_to_retry` (or `session_redacted`) when none applies.
pub(crate) async fn retry_handoff(
    ctx: &AppState,
    handoff: &HandoffRow,
) -> Result<Replayed, ApiError> {
    let org_id = &handoff.org_id;
    let session_id = &handoff.session_id;
    let now = ctx.clock.now_ms();
    let mut replayed = ctx
        .store
        .replay_failed(org_id, Some(&handoff.handoff_id), now)
        .await?;
    if handoff.state == HandoffState::Queued {
        replayed.handoffs += ctx
            .store
            .wake_queued(
                org_id,
                Some(&handoff.handoff_id),
                "an admin asked to retry",
                now,
            )
            .await?;
        // Already due: the worker takes it next; nothing to put back, nothing refused.
        ctx.wake.org(org_id);
        return Ok(replayed);
    }
    if replayed.handoffs + replayed.callbacks == 0 && handoff.redacted_at.is_some() {
        return Err(ApiError::SessionRedacted {
            session: session_id.to_string(),
        });
    }
    if replayed.handoffs + replayed.callbacks == 0 {
        return Err(ApiError::NothingToRetry {
            session: session_id.to_string(),
            state: handoff.state.as_str(),
        });
    }
    ctx.wake.org(org_id);
    Ok(replayed)
}

fn requeued(handoff: &HandoffRow, replayed: Replayed) -> (StatusCode, Json<Requeued>) {
    (
        StatusCode::ACCEPTED,
        Json(Requeued {
            handoff_id: Some(handoff.handoff_id.clone()),
            session_id: Some(handoff.session_id.clone()),
            requeued_handoffs: replayed.handoffs,
            requeued_callbacks: replayed.callbacks,
        }),
    )
}

/// `POST /v1/orgs/{org_id}/handoffs/retry-failed`: re-queues every failed handoff and
/// callback of the org (e.g. after fixing its credentials). 202 with the counts.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/handoffs/retry-failed", tag = "handoffs", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 202, description = "What was re-queued", body = Requeued), PathProblems),
    security(("admin_token" = [])))]
pub async fn retry_failed(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(org_id): OrgIdPath,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let org = existing_org(&ctx, &org_id).await?;
    let replayed = ctx
        .store
        .replay_failed(&org.org_id, None, ctx.clock.now_ms())
        .await?;
    ctx.wake.org(&org.org_id);
    Ok((
        StatusCode::ACCEPTED,
        Json(Requeued {
            handoff_id: None,
            session_id: None,
            requeued_handoffs: replayed.handoffs,
            requeued_callbacks: replayed.callbacks,
        }),
    ))
}
