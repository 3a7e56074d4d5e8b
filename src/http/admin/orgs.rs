//! `/v1/orgs/{org_id}` and its webhook secret.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;
use crate::connection::orgs::{OrgInput, RotateInput};
use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, OptionalApiJson, OrgIdPath};
use crate::http::lookup::existing_org;
use crate::http::openapi::{PathProblems, ORG_ID_DOC};
use crate::http::state::AppState;
use crate::http::views::OrgView;

/// The answer to a rotation: the new secret, shown this once when the bridge generated it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// `whsec_` + base64 of 32 random bytes; absent when the request gave the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Until when the previous secret is still accepted (24 h).
    pub previous_secret_valid_until: String,
}

/// The answer to revoking the previous secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// Whether a previous secret was kept and is now forgotten.
    pub revoked: bool,
}

/// Creates (201, with the new `webhook_secret`, shown this once) or updates (200) an org.
#[utoipa::path(put, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    request_body = OrgInput,
    responses(
        (status = 201, description = "Created; a generated `webhook_secret` is shown this once (an imported one is not echoed)", body = OrgView),
        (status = 200, description = "Updated", body = OrgView),
        PathProblems,
    ), security(("admin_token" = [])))]
pub async fn put_org(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
    ApiJson(input): ApiJson<OrgInput>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    let saved = ctx
        .org_rules()
        .save_org(&id, &input, ctx.clock.now_ms())
        .await?;
    let mut body = OrgView::new(&saved.org);
    body.webhook_secret = saved.generated_secret.map(|s| s.expose().to_owned());
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)))
}

/// `GET /v1/orgs/{org_id}`: the org, never its secret.
#[utoipa::path(get, path = "/v1/orgs/{org_id}", tag = "orgs", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 200, description = "The org, never its secret", body = OrgView), PathProblems),
    security(("admin_token" = [])))]
pub async fn get_org(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<Json<OrgView>, ApiError> {
    Ok(Json(OrgView::new(&existing_org(&ctx, &id).await?)))
}

/// `POST /v1/orgs/{org_id}/webhook-secret`: a new secret, the one in the body (pasted from
/// the widget backend) or a generated one; the old one is accepted for 24 h.
#[utoipa::path(post, path = "/v1/orgs/{org_id}/webhook-secret", tag = "orgs", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    request_body(content = Option<RotateInput>, description = "Optional: the secret to rotate to; without a body a new one is generated"),
    responses((status = 200, description = "The new secret (shown only when generated)", body = RotatedSecret), PathProblems),
    security(("admin_token" = [])))]
pub async fn rotate_secret(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
    OptionalApiJson(input): OptionalApiJson<RotateInput>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let (generated, until) = ctx
        .org_rules()
        .rotate_webhook_secret(&org, &input.unwrap_or_default(), ctx.clock.now_ms())
        .await?;
    Ok(Json(RotatedSecret {
        webhook_secret: generated.map(|s| s.expose().to_owned()),
        previous_secret_valid_until: rfc3339(until),
    }))
}

/// `DELETE /v1/orgs/{org_id}/webhook-secret/previous`: the rotated-out secret stops
/// verifying now instead of at the end of its grace period (after a leak: rotate, then
/// revoke). 200 `{revoked: true|false}`; false when no previous secret was kept.
#[utoipa::path(delete, path = "/v1/orgs/{org_id}/webhook-secret/previous", tag = "orgs", params(("org_id" = String, Path, description = ORG_ID_DOC)),
    responses((status = 200, description = "Whether a previous secret was forgotten", body = Revoked), PathProblems),
    security(("admin_token" = [])))]
pub async fn revoke_previous_secret(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(id): OrgIdPath,
) -> Result<Json<Revoked>, ApiError> {
    let org = existing_org(&ctx, &id).await?;
    let revoked = ctx
        .store
        .revoke_previous_webhook_secret(&org.org_id, ctx.clock.now_ms())
        .await?;
    Ok(Json(Revoked { revoked }))
}
