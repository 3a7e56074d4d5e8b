//! `/v1/orgs/{org_id}/connection`: test, test-and-save, check again, read, forget.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::existing_org;
use crate::connection::orgs::{ConnectionStatus, SaveOutcome};
use crate::connection::{self, Check, ConnectionInput};
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::AppState;
use crate::store::{now_ms, rfc3339};

/// `POST /v1/orgs/{org_id}/connection/test`: runs the checks, saves nothing.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/connection/test", tag = "connection", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    request_body = crate::connection::ConnectionInput,
    responses((status = 200, description = "`{status: passed|failed, checks: [{name, status, code, message, hint, detail, duration_ms}]}`; nothing saved", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn test_connection(
    State(ctx): State<Arc<AppState>>,
    Path(raw): Path<String>,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<Response, ApiError> {
    existing_org(&ctx, &raw).await?;
    let (checks, _) = connection::run_checks(&ctx.dataverse, &input, ctx.allow_insecure).await;
    let status = if connection::all_passed(&checks) {
        "passed"
    } else {
        "failed"
    };
    Ok(Json(json!({ "status": status, "checks": checks })).into_response())
}

/// `PUT /v1/orgs/{org_id}/connection`: runs the checks and saves only if all pass (200);
/// otherwise 422 and the previous connection stays as it was.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    request_body = crate::connection::ConnectionInput,
    responses(
        (status = 200, description = "Every check passed; saved as `active`", body = Object),
        (status = 422, description = "A check failed; `{status: failed, checks}`, the previous connection stays", body = Object),
        (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ), security(("admin_token" = [])))]
pub async fn save_connection(
    State(ctx): State<Arc<AppState>>,
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
#[utoipa::path(post, path = "/v1/orgs/{org_id}/connection/check", tag = "connection", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "The checks of the saved connection; the card becomes `active` or `failing`", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn check_connection(
    State(ctx): State<Arc<AppState>>,
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
#[utoipa::path(get, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "The connection, never its client secret", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn get_connection(
    State(ctx): State<Arc<AppState>>,
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
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    responses((status = 204, description = "Forgotten"), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn delete_connection(
    State(ctx): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    if ctx.store.delete_connection(&org.org_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotConnected(org.org_id))
    }
}
