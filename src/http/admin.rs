//! Admin API (SPEC §5): orgs, the Dynamics connection, handoff records. Behind the admin
//! token (see `require_admin`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::ApiJson;
use super::views;
use crate::connection::orgs::{ConnectionStatus, OrgError, OrgInput, SaveOutcome};
use crate::connection::{self, Check, ConnectionInput};
use crate::domain::HandoffState;
use crate::domain::OrgId;
use crate::error::ApiError;
use crate::store::{now_ms, rfc3339, HandoffRow, OrgRow};
use crate::webhook::FieldError;
use crate::Context;

fn org_id(raw: &str) -> Result<OrgId, ApiError> {
    OrgId::parse(raw).map_err(|why| {
        ApiError::Validation(vec![FieldError::new(
            "/org_id",
            format!("(in the URL) {why}"),
        )])
    })
}

pub(super) async fn existing_org(ctx: &Context, raw: &str) -> Result<OrgRow, ApiError> {
    let id = OrgId::parse(raw).map_err(|_| ApiError::UnknownOrg(raw.to_owned()))?;
    ctx.store
        .org(id.as_str())
        .await?
        .ok_or_else(|| ApiError::UnknownOrg(raw.to_owned()))
}

pub(super) async fn existing_handoff(
    ctx: &Context,
    org: &OrgRow,
    session_id: &str,
) -> Result<HandoffRow, ApiError> {
    ctx.store
        .handoff(&org.org_id, session_id)
        .await?
        .ok_or_else(|| ApiError::UnknownSession {
            org: org.org_id.clone(),
            session: session_id.to_owned(),
        })
}

/// Creates (201, with the new `webhook_secret`, shown this once) or updates (200) an org.
#[utoipa::path(put, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    request_body = OrgInput,
    responses(
        (status = 201, description = "Created; `webhook_secret` is shown this once", body = Object),
        (status = 200, description = "Updated", body = Object),
        (status = 422, description = "`validation_failed`: `errors` name each field", body = super::openapi::Problem, content_type = "application/problem+json"),
    ), security(("admin_token" = [])))]
pub async fn put_org(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
    ApiJson(input): ApiJson<OrgInput>,
) -> Result<Response, ApiError> {
    let id = org_id(&raw)?;
    let saved = ctx
        .org_rules()
        .save_org(&id, &input, now_ms())
        .await
        .map_err(|e| match e {
            OrgError::Invalid(errors) => ApiError::Validation(errors),
            OrgError::Store(e) => ApiError::StoreUnavailable(e),
        })?;
    let mut body = views::org(&saved.org);
    match saved.created_secret {
        Some(secret) => {
            body["webhook_secret"] = json!(secret.expose());
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        None => Ok((StatusCode::OK, Json(body)).into_response()),
    }
}

/// `GET /v1/orgs/{org_id}`: the org, never its secret.
#[utoipa::path(get, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "The org, never its secret", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn get_org(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::org(&existing_org(&ctx, &raw).await?)))
}

/// `POST /v1/orgs/{org_id}/webhook-secret`: a new secret; the old one is accepted for 24 h.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhook-secret", tag = "orgs", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "`{webhook_secret, previous_secret_valid_until}`", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn rotate_secret(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let (secret, until) = ctx
        .org_rules()
        .rotate_webhook_secret(&org, now_ms())
        .await?;
    Ok(Json(json!({
        "webhook_secret": secret.expose(),
        "previous_secret_valid_until": rfc3339(until),
    })))
}

/// `DELETE /v1/orgs/{org_id}/webhook-secret/previous`: the rotated-out secret stops
/// verifying now instead of at the end of its grace period (after a leak: rotate, then
/// revoke). 200 `{revoked: true|false}`; false when no previous secret was kept.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/webhook-secret/previous", tag = "orgs", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "`{revoked}`: whether a previous secret was forgotten", body = Object), (status = 404, description = "`unknown_org`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn revoke_previous_secret(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let revoked = ctx
        .store
        .revoke_previous_webhook_secret(&org.org_id, now_ms())
        .await?;
    Ok(Json(json!({ "revoked": revoked })))
}

/// `POST /v1/orgs/{org_id}/connection/test`: runs the checks, saves nothing.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/connection/test", tag = "connection", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    request_body = crate::connection::ConnectionInput,
    responses((status = 200, description = "`{status: passed|failed, checks: [{name, status, code, message, hint, detail, duration_ms}]}`; nothing saved", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn test_connection(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<Response, ApiError> {
    existing_org(&ctx, &raw).await?;
    let (checks, _) =
        connection::run_checks(&ctx.dataverse, &input, ctx.settings.allow_insecure_dynamics).await;
    let status = if connection::all_passed(&checks) {
        "passed"
    } else {
        "failed"
    };
    Ok(Json(json!({ "status": status, "checks": checks })).into_response())
}

/// `PUT /v1/orgs/{org_id}/connection`: runs the checks and saves only if all pass (200);
/// otherwise 422 and the previous connection stays as it was.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    request_body = crate::connection::ConnectionInput,
    responses(
        (status = 200, description = "Every check passed; saved as `active`", body = Object),
        (status = 422, description = "A check failed; `{status: failed, checks}`, the previous connection stays", body = Object),
        (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json"),
    ), security(("admin_token" = [])))]
pub async fn save_connection(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<Response, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    match ctx
        .org_rules()
        .save_connection(&org, &input, now_ms())
        .await?
    {
        SaveOutcome::Saved(checks) => {
            // Handoffs waiting for a connection can go now.
            ctx.wake.notify_one();
            Ok(
                Json(json!({ "status": ConnectionStatus::Active, "checks": checks }))
                    .into_response(),
            )
        }
        SaveOutcome::Refused(checks) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "status": "failed", "checks": checks })),
        )
            .into_response()),
    }
}

/// `POST /v1/orgs/{org_id}/connection/check`: runs the checks again on the saved connection
/// (e.g. after its client secret expired) and records the verdict: `active` when every
/// check passes, `failing` otherwise. 404 `not_connected` without a connection.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/connection/check", tag = "connection", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "The checks of the saved connection; the card becomes `active` or `failing`", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn check_connection(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let conn = ctx
        .store
        .connection(&org.org_id)
        .await?
        .ok_or_else(|| ApiError::NotConnected(org.org_id.clone()))?;
    let now = now_ms();
    let (status, checks) = ctx.org_rules().check_again(&conn, now).await?;
    Ok(Json(
        json!({ "status": status, "last_checked_at": rfc3339(now), "checks": checks }),
    ))
}

/// `GET /v1/orgs/{org_id}/connection`: status and settings, never the secret.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "The connection, never its client secret", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn get_connection(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let Some(conn) = ctx.store.connection(&org.org_id).await? else {
        return Ok(Json(json!({ "status": "not_connected" })));
    };
    let checks: Vec<Check> = serde_json::from_str(&conn.checks).unwrap_or_default();
    Ok(Json(json!({
        "status": ConnectionStatus::stored(&conn.status),
        "tenant_id": conn.tenant_id,
        "client_id": conn.client_id,
        "environment_url": conn.environment_url,
        "default_queue_id": conn.workstream_id,
        "create_contact_if_missing": conn.create_contact_if_missing,
        "client_secret_set": true,
        "last_checked_at": rfc3339(conn.last_checked_at),
        "checks": checks,
    })))
}

/// `DELETE /v1/orgs/{org_id}/connection`: forgets the credentials; 204, or 404 when there
/// was no connection. Records already in Dynamics stay.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    responses((status = 204, description = "Forgotten"), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn delete_connection(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    if ctx.store.delete_connection(&org.org_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotConnected(org.org_id))
    }
}

/// `GET /v1/orgs/{org_id}/sessions/{session_id}`: the handoff record with its timeline.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/sessions/{session_id}", tag = "handoffs", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC), ("session_id" = String, Path, description = super::openapi::SESSION_ID_DOC)),
    responses((status = 200, description = "The handoff record with `events` and `callbacks`", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn get_session(
    State(ctx): State<Arc<Context>>,
    Path((raw, session_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let handoff = existing_handoff(&ctx, &org, &session_id).await?;
    let events = ctx.store.events(&handoff.handoff_id).await?;
    let callbacks = ctx.store.callbacks(&handoff.handoff_id).await?;
    Ok(Json(views::handoff_record(&handoff, &events, &callbacks)))
}

/// Query of `GET /v1/status`.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    pub org: Option<String>,
    pub state: Option<String>,
    pub session: Option<String>,
    pub limit: Option<String>,
}

/// `GET /v1/status?org=&state=&session=&limit=`: per org, the connection card, counts over
/// 24 h, the queue, and recent handoffs with an explanation each (`diagnostics.rs`).
#[utoipa::path(get, path = "/v1/status", tag = "status",
    params(
        ("org" = Option<String>, Query, description = "Only this org"),
        ("state" = Option<String>, Query, description = "queued, processing, succeeded, failed or skipped"),
        ("session" = Option<String>, Query, description = "Session ids containing this text"),
        ("limit" = Option<u32>, Query, description = "Recent handoffs per org, 1–500 (default 20)"),
    ),
    responses((status = 200, description = "`{generated_at, orgs: [{org_id, name, connection, counts_24h, queue, recent}]}`", body = Object)),
    security(("admin_token" = [])))]
pub async fn status(
    State(ctx): State<Arc<Context>>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let (state, limit) = list_options(query.state.as_deref(), query.limit.as_deref(), 20)?;
    let filter = crate::diagnostics::Filter {
        org: query.org.filter(|o| !o.is_empty()),
        state,
        session: query.session,
        limit,
    };
    Ok(Json(crate::diagnostics::status(&ctx.store, &filter).await?))
}

/// Parses the `state` and `limit` query options of the lists (`limit` 1–500).
pub(super) fn list_options(
    state: Option<&str>,
    limit: Option<&str>,
    default_limit: i64,
) -> Result<(Option<HandoffState>, i64), ApiError> {
    let mut errors = Vec::new();
    let state = match state.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match HandoffState::parse(s) {
            Some(state) => Some(state),
            None => {
                errors.push(FieldError::new(
                    "/state",
                    "(query) must be one of queued, processing, succeeded, failed, skipped",
                ));
                None
            }
        },
    };
    let limit = match limit {
        None => default_limit,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "/limit",
                    "(query) must be a whole number from 1 to 500",
                ));
                default_limit
            }
        },
    };
    if errors.is_empty() {
        Ok((state, limit))
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Query of the session list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub limit: Option<String>,
}

/// `GET /v1/orgs/{org_id}/sessions?state=…&limit=…`: recent handoffs, newest first
/// (`limit` 1–500, default 50).
#[utoipa::path(get, path = "/v1/orgs/{org_id}/sessions", tag = "handoffs",
    params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC),
        ("state" = Option<String>, Query, description = "queued, processing, succeeded, failed or skipped"),
        ("limit" = Option<u32>, Query, description = "1–500 (default 50)"),
    ),
    responses((status = 200, description = "`{sessions: [...]}`, newest first", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn list_sessions(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let (state, limit) = list_options(query.state.as_deref(), query.limit.as_deref(), 50)?;
    let rows = ctx
        .store
        .recent_handoffs(&org.org_id, state, None, limit)
        .await?;
    Ok(Json(json!({ "sessions": rows
            .iter()
            .map(|r| views::handoff_summary(&r.handoff, r.failed_callback.as_deref()))
            .collect::<Vec<_>>() })))
}

/// `POST /v1/orgs/{org_id}/sessions/{session_id}/retry`: re-queues a `failed` handoff, and
/// the session's failed callbacks (202). The same deterministic keys are used, so a replay
/// cannot create a second live work item or a second logical callback. 409 when nothing
/// failed.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/sessions/{session_id}/retry", tag = "handoffs", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC), ("session_id" = String, Path, description = super::openapi::SESSION_ID_DOC)),
    responses(
        (status = 202, description = "Re-queued; `{requeued_handoffs, requeued_callbacks}`", body = Object),
        (status = 409, description = "`nothing_to_retry`, or `session_redacted` (the retention period removed the session)", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json"),
    ), security(("admin_token" = [])))]
pub async fn retry_session(
    State(ctx): State<Arc<Context>>,
    Path((raw, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let handoff = existing_handoff(&ctx, &org, &session_id).await?;
    let replayed = ctx
        .store
        .replay_failed(&org.org_id, Some(&handoff.handoff_id), now_ms())
        .await?;
    if replayed.handoffs + replayed.callbacks == 0 && handoff.redacted_at.is_some() {
        return Err(ApiError::SessionRedacted {
            session: session_id,
        });
    }
    if replayed.handoffs + replayed.callbacks == 0 {
        return Err(ApiError::NothingToRetry {
            session: session_id,
            state: handoff.state.as_str(),
        });
    }
    ctx.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "handoff_id": handoff.handoff_id,
            "session_id": handoff.session_id,
            "requeued_handoffs": replayed.handoffs,
            "requeued_callbacks": replayed.callbacks,
        })),
    )
        .into_response())
}

/// `POST /v1/orgs/{org_id}/handoffs/retry-failed`: re-queues every failed handoff and
/// callback of the org (e.g. after fixing its credentials). 202 with the counts.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/handoffs/retry-failed", tag = "handoffs", params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    responses((status = 202, description = "`{requeued_handoffs, requeued_callbacks}`", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = super::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn retry_failed(
    State(ctx): State<Arc<Context>>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let replayed = ctx.store.replay_failed(&org.org_id, None, now_ms()).await?;
    ctx.wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "requeued_handoffs": replayed.handoffs, "requeued_callbacks": replayed.callbacks })),
    )
        .into_response())
}
