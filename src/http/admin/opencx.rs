//! `/v1/orgs/{org_id}/opencx`: test-and-save, read and forget the org's OpenCX connection.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::connection::{save_answer, CheckList, Rechecked};
use crate::clock::rfc3339;
use crate::connection::opencx::OpenCxInput;
use crate::connection::orgs::ConnectionStatus;
use crate::connection::Check;
use crate::diagnostics::CardStatus;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, OrgIdPath};
use crate::http::lookup::existing_org;
use crate::http::openapi::{PathProblems, ORG_ID_DOC};
use crate::http::state::AppState;

/// The saved OpenCX connection, never its API key; only `status` without one.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenCxView {
    pub status: CardStatus,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub saved: Option<SavedOpenCx>,
}

/// What was saved.
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedOpenCx {
    pub base_url: String,
    pub contact_emails_verified: bool,
    /// The write-back message; `null` when the write-back is off.
    pub write_back_message: Option<String>,
    /// Always `true`: the key is stored sealed and never returned.
    pub api_key_set: bool,
    pub last_checked_at: String,
    pub checks: Vec<Check>,
}

/// `PUT /v1/orgs/{org_id}/opencx`: runs the checks (`input`, `api_key`) and saves only if
/// both pass (200), then the org's handoffs waiting for it go at once; otherwise 422 and
/// the previous OpenCX connection stays as it was.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/opencx", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    request_body = OpenCxInput,
    responses(
        (status = 200, description = "Both checks passed; saved as `active`", body = CheckList),
        (status = 422, description = "A check failed (`status: failed`, with the checks; the previous OpenCX connection stays), or `validation_failed` naming `/write_back_message` or an org id that breaks its rule", body = CheckList),
        (status = 404, description = "`unknown_org`", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ), security(("admin_token" = [])))]
pub async fn save_opencx(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
    ApiJson(input): ApiJson<OpenCxInput>,
) -> Result<(StatusCode, Json<CheckList>), ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let now = ctx.clock.now_ms();
    let saved = ctx.org_rules().save_opencx(&org, &input, now).await?;
    Ok(save_answer(&ctx, &org.org_id, saved))
}

/// `POST /v1/orgs/{org_id}/opencx/check`: runs the checks again on the saved OpenCX
/// connection and records the verdict: `active` when they pass (the org's waiting handoffs
/// go at once), `failing` otherwise. 404 `opencx_not_connected` without one.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/opencx/check", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 200, description = "The checks of the saved OpenCX connection; its card becomes `active` or `failing`", body = Rechecked), PathProblems),
    security(("admin_token" = [])))]
pub async fn check_opencx(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<Json<Rechecked>, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let conn = ctx
        .store
        .opencx_connection(&org.org_id)
        .await?
        .ok_or_else(|| ApiError::OpenCxNotConnected(org.org_id.clone()))?;
    let now = ctx.clock.now_ms();
    let (status, checks) = ctx.org_rules().check_opencx_again(&conn, now).await?;
    ctx.wake.org(&org.org_id);
    Ok(Json(Rechecked {
        status,
        last_checked_at: rfc3339(now),
        checks,
    }))
}

/// `GET /v1/orgs/{org_id}/opencx`: status and settings, never the API key.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/opencx", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 200, description = "The OpenCX connection, never its API key; `{status: not_connected}` without one", body = OpenCxView), PathProblems),
    security(("admin_token" = [])))]
pub async fn get_opencx(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<Json<OpenCxView>, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let Some(conn) = ctx.store.opencx_connection(&org.org_id).await? else {
        return Ok(Json(OpenCxView {
            status: CardStatus::NotConnected,
            saved: None,
        }));
    };
    Ok(Json(OpenCxView {
        status: ConnectionStatus::stored(&conn.status).into(),
        saved: Some(SavedOpenCx {
            checks: serde_json::from_str(&conn.checks).unwrap_or_default(),
            base_url: conn.base_url,
            contact_emails_verified: conn.contact_emails_verified,
            write_back_message: conn.write_back_message,
            api_key_set: true,
            last_checked_at: rfc3339(conn.last_checked_at),
        }),
    }))
}

/// `DELETE /v1/orgs/{org_id}/opencx`: forgets the API key and settings; 204, or 404
/// `opencx_not_connected` when there was none. Thin events then wait for a new one.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/opencx", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 204, description = "Forgotten"), PathProblems),
    security(("admin_token" = [])))]
pub async fn delete_opencx(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<StatusCode, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    if ctx.store.delete_opencx_connection(&org.org_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::OpenCxNotConnected(org.org_id))
    }
}
