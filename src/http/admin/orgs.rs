//! `/v1/orgs/{org_id}` and its webhook secret.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{existing_org, org_id};
use crate::connection::orgs::{OrgError, OrgInput};
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::views;
use crate::http::AppState;
use crate::store::{now_ms, rfc3339};

/// Creates (201, with the new `webhook_secret`, shown this once) or updates (200) an org.
#[utoipa::path(put, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    request_body = OrgInput,
    responses(
        (status = 201, description = "Created; `webhook_secret` is shown this once", body = Object),
        (status = 200, description = "Updated", body = Object),
        (status = 422, description = "`validation_failed`: `errors` name each field", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ), security(("admin_token" = [])))]
pub async fn put_org(
    State(ctx): State<Arc<AppState>>,
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
#[utoipa::path(get, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "The org, never its secret", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn get_org(
    State(ctx): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(views::org(&existing_org(&ctx, &raw).await?)))
}

/// `POST /v1/orgs/{org_id}/webhook-secret`: a new secret; the old one is accepted for 24 h.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhook-secret", tag = "orgs", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "`{webhook_secret, previous_secret_valid_until}`", body = Object), (status = 404, description = "`unknown_org`, `unknown_session` or `not_connected`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn rotate_secret(
    State(ctx): State<Arc<AppState>>,
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
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/webhook-secret/previous", tag = "orgs", params(("org_id" = String, Path, description = crate::http::openapi::ORG_ID_DOC)),
    responses((status = 200, description = "`{revoked}`: whether a previous secret was forgotten", body = Object), (status = 404, description = "`unknown_org`", body = crate::http::openapi::Problem, content_type = "application/problem+json")),
    security(("admin_token" = [])))]
pub async fn revoke_previous_secret(
    State(ctx): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let org = existing_org(&ctx, &raw).await?;
    let revoked = ctx
        .store
        .revoke_previous_webhook_secret(&org.org_id, now_ms())
        .await?;
    Ok(Json(json!({ "revoked": revoked })))
}
