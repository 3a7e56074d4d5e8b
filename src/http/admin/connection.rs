//! `/v1/orgs/{org_id}/connection`: test, test-and-save, check again, read, forget.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::connection::orgs::{ConnectionStatus, SaveOutcome};
use crate::connection::{self, Check, ConnectionInput};
use crate::diagnostics::CardStatus;
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, OrgIdPath};
use crate::http::lookup::existing_org;
use crate::http::openapi::{PathProblems, ORG_ID_DOC};
use crate::http::state::AppState;

/// The verdict of a test, or of a test-and-save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// `test`: every check passed.
    Passed,
    /// `test-and-save`: every check passed and the connection is saved.
    Active,
    /// A check failed; nothing saved.
    Failed,
}

/// The checks of a test or a test-and-save, in the order they ran (input, token,
/// dataverse, workstream, privileges, incidents); a check after a failure is `skip`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckList {
    pub status: Verdict,
    pub checks: Vec<Check>,
}

/// The checks of the saved connection run again, and the card's new state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rechecked {
    pub status: ConnectionStatus,
    pub last_checked_at: String,
    pub checks: Vec<Check>,
}

/// The saved connection, never its client secret; only `status` without one.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub status: CardStatus,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub saved: Option<SavedConnection>,
}

/// What was saved (the OpenCX field name `default_queue_id` holds the workstream id).
#[derive(Debug, Serialize, ToSchema)]
pub struct SavedConnection {
    pub tenant_id: String,
    pub client_id: String,
    pub environment_url: String,
    pub default_queue_id: String,
    pub create_contact_if_missing: bool,
    /// When the client secret expires, as entered (RFC 3339); `null` when not given.
    pub client_secret_expires_at: Option<String>,
    /// The incident settings in force, in the shape `incidents` is saved with (defaults
    /// filled in): `{enabled, fallback_customer, priority, case_origin, owner, routing}`.
    #[schema(value_type = Object)]
    pub incidents: serde_json::Value,
    /// Always `true`: the secret is stored sealed and never returned.
    pub client_secret_set: bool,
    pub last_checked_at: String,
    pub checks: Vec<Check>,
}

/// `POST /v1/orgs/{org_id}/connection/test`: runs the checks, saves nothing.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/connection/test", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    request_body = ConnectionInput,
    responses((status = 200, description = "`passed` or `failed`, with every check; nothing saved", body = CheckList), PathProblems),
    security(("admin_token" = [])))]
pub async fn test_connection(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<Json<CheckList>, ApiError> {
    existing_org(&ctx, &id).await?;
    let (checks, _) = connection::run_checks(&ctx.dataverse, &input, ctx.allow_insecure).await;
    let status = if connection::all_passed(&checks) {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    Ok(Json(CheckList { status, checks }))
}

/// `PUT /v1/orgs/{org_id}/connection`: runs the checks and saves only if all pass (200);
/// otherwise 422 and the previous connection stays as it was.
#[utoipa::path(put, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    request_body = ConnectionInput,
    responses(
        (status = 200, description = "Every check passed; saved as `active`", body = CheckList),
        (status = 422, description = "A check failed (`status: failed`, with the checks; the previous connection stays), or `validation_failed` for an org id that breaks its rule", body = CheckList),
        (status = 404, description = "`unknown_org`", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ), security(("admin_token" = [])))]
pub async fn save_connection(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
    ApiJson(input): ApiJson<ConnectionInput>,
) -> Result<(StatusCode, Json<CheckList>), ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let saved = ctx
        .org_rules()
        .save_connection(&org, &input, ctx.clock.now_ms())
        .await?;
    Ok(save_answer(&ctx, &org.org_id, saved))
}

/// The answer to a test-and-save: `200 active` (and the worker woken: handoffs waiting for
/// the connection can go now), or `422 failed` with the checks.
pub(super) fn save_answer(
    ctx: &AppState,
    org_id: &str,
    saved: SaveOutcome,
) -> (StatusCode, Json<CheckList>) {
    match saved {
        SaveOutcome::Saved(checks) => {
            ctx.wake.org(org_id);
            let status = Verdict::Active;
            (StatusCode::OK, Json(CheckList { status, checks }))
        }
        SaveOutcome::Refused(checks) => {
            let status = Verdict::Failed;
            let list = Json(CheckList { status, checks });
            (StatusCode::UNPROCESSABLE_ENTITY, list)
        }
    }
}

/// `POST /v1/orgs/{org_id}/connection/check`: runs the checks again on the saved connection
/// (e.g. after its client secret expired) and records the verdict: `active` when every
/// check passes, `failing` otherwise. 404 `not_connected` without a connection.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/connection/check", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 200, description = "The checks of the saved connection; the card becomes `active` or `failing`", body = Rechecked), PathProblems),
    security(("admin_token" = [])))]
pub async fn check_connection(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<Json<Rechecked>, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let conn = ctx
        .store
        .connection(&org.org_id)
        .await?
        .ok_or_else(|| ApiError::NotConnected(org.org_id.clone()))?;
    let now = ctx.clock.now_ms();
    let (status, checks) = ctx.org_rules().check_again(&conn, now).await?;
    // Passing checks made the org's waiting handoffs due.
    ctx.wake.org(&org.org_id);
    Ok(Json(Rechecked {
        status,
        last_checked_at: rfc3339(now),
        checks,
    }))
}

/// `GET /v1/orgs/{org_id}/connection`: status and settings, never the secret.
#[utoipa::path(get, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 200, description = "The connection, never its client secret; `{status: not_connected}` without one", body = ConnectionView), PathProblems),
    security(("admin_token" = [])))]
pub async fn get_connection(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<Json<ConnectionView>, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let Some(conn) = ctx.store.connection(&org.org_id).await? else {
        return Ok(Json(ConnectionView {
            status: CardStatus::NotConnected,
            saved: None,
        }));
    };
    // Unreadable stored settings show as `null` (the handoffs then fail with
    // `incident_settings_invalid`, naming why).
    let incidents = connection::incidents::stored(conn.incidents.as_deref())
        .ok()
        .map_or(serde_json::Value::Null, |settings| {
            serde_json::to_value(settings).expect("incident settings serialize")
        });
    Ok(Json(ConnectionView {
        status: ConnectionStatus::stored(&conn.status).into(),
        saved: Some(SavedConnection {
            incidents,
            checks: serde_json::from_str(&conn.checks).unwrap_or_default(),
            tenant_id: conn.tenant_id,
            client_id: conn.client_id,
            environment_url: conn.environment_url,
            default_queue_id: conn.workstream_id,
            create_contact_if_missing: conn.create_contact_if_missing,
            client_secret_expires_at: conn.client_secret_expires_at.map(rfc3339),
            client_secret_set: true,
            last_checked_at: rfc3339(conn.last_checked_at),
        }),
    }))
}

/// `DELETE /v1/orgs/{org_id}/connection`: forgets the credentials; 204, or 404 when there
/// was no connection. Records already in Dynamics stay.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/connection", tag = "connection", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 204, description = "Forgotten"), PathProblems),
    security(("admin_token" = [])))]
pub async fn delete_connection(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<StatusCode, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    if ctx.store.delete_connection(&org.org_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotConnected(org.org_id))
    }
}
