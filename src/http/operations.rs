//! Operations routes: liveness, readiness, metrics, and the API document.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa::openapi::OpenApi;

use super::state::AppState;
use crate::http::error::ApiError;
use crate::metrics::QueueGauge;

/// `GET /healthz`: 200 while the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
        (status = 401, description = "`unauthorized`: the admin token is required"),
    ), security(("admin_token" = [])))]
/// `GET /metrics`: Prometheus metrics as OpenMetrics text (see [`crate::metrics`]); admin
/// token required, as for the admin API.
pub async fn metrics(State(ctx): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let now = ctx.clock.now_ms();
    let queues: Vec<QueueGauge> = ctx
        .store
        .queue_depths(None)
        .await?
        .into_iter()
        .map(|q| QueueGauge {
            org_id: q.org_id,
            depth: q.depth,
            oldest_age_secs: q
                .oldest_queued_at
                .map_or(0.0, |t| now.saturating_sub(t).max(0) as f64 / 1000.0),
        })
        .collect();
    let text = ctx.metrics.render(&queues);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`ready`: the store answers", content_type = "text/plain"),
        (status = 503, description = "`store_unavailable`", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
/// `GET /readyz`: 200 when the store answers, 503 `store_unavailable` otherwise.
pub async fn readyz(State(ctx): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    ctx.store.ping().await?;
    Ok("ready")
}

/// `GET /openapi.json`: this API as OpenAPI 3.1. The document is the route table's
/// (the router in `http/mod.rs` attaches it).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)", content_type = "application/json")))]
pub async fn openapi_json(Extension(document): Extension<Arc<OpenApi>>) -> Json<OpenApi> {
    Json(document.as_ref().clone())
}
