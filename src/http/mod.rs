//! HTTP routes only: parse, call the domain, map to responses.

pub mod admin;
pub mod extract;
pub mod openapi;
pub mod server;
pub mod status;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;
use crate::metrics::QueueGauge;
use crate::Context;

/// The whole HTTP API.
pub fn router(ctx: Arc<Context>) -> Router {
    let admin = Router::new()
        .route("/v1/orgs/{org_id}", put(admin::put_org).get(admin::get_org))
        .route(
            "/v1/orgs/{org_id}/webhook-secret",
            post(admin::rotate_secret),
        )
        .route(
            "/v1/orgs/{org_id}/webhook-secret/previous",
            delete(admin::revoke_previous_secret),
        )
        .route(
            "/v1/orgs/{org_id}/connection/test",
            post(admin::test_connection),
        )
        .route(
            "/v1/orgs/{org_id}/connection",
            put(admin::save_connection)
                .get(admin::get_connection)
                .delete(admin::delete_connection),
        )
        .route(
            "/v1/orgs/{org_id}/connection/check",
            post(admin::check_connection),
        )
        .route("/v1/orgs/{org_id}/sessions", get(admin::list_sessions))
        .route("/v1/status", get(admin::status))
        .route("/metrics", get(metrics))
        .route(
            "/v1/orgs/{org_id}/sessions/{session_id}/retry",
            post(admin::retry_session),
        )
        .route(
            "/v1/orgs/{org_id}/handoffs/retry-failed",
            post(admin::retry_failed),
        )
        .route(
            "/v1/orgs/{org_id}/sessions/{session_id}",
            get(admin::get_session),
        )
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_admin));
    let webhooks = Router::new()
        .route("/v1/webhooks/{org_id}", post(webhooks::receive))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), count_webhook));
    Router::new()
        .merge(webhooks)
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/readyz", get(readyz))
        .route("/status", get(status::page))
        .route(
            "/status/{org_id}/sessions/{session_id}",
            get(status::session),
        )
        .merge(admin)
        .layer(middleware::from_fn(log_request))
        .with_state(ctx)
}

/// `GET /healthz`: 200 while the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Counts each webhook delivery by the status it was answered with.
async fn count_webhook(State(ctx): State<Arc<Context>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    ctx.metrics.webhook_answered(response.status().as_u16());
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
        (status = 401, description = "`unauthorized`: the admin token is required"),
    ), security(("admin_token" = [])))]
/// `GET /metrics`: Prometheus metrics as OpenMetrics text (see [`crate::metrics`]); admin
/// token required, as for the admin API.
async fn metrics(State(ctx): State<Arc<Context>>) -> Result<Response, ApiError> {
    let now = crate::store::now_ms();
    let queues: Vec<QueueGauge> = ctx
        .store
        .queue_depths()
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
        (status = 503, description = "`store_unavailable`", body = openapi::Problem, content_type = "application/problem+json"),
    ))]
/// `GET /readyz`: 200 when the store answers, 503 `store_unavailable` otherwise.
async fn readyz(State(ctx): State<Arc<Context>>) -> Result<&'static str, ApiError> {
    ctx.store.ping().await?;
    Ok("ready")
}

/// Whether `given` is the admin token (constant-time comparison).
fn admin_token_matches(ctx: &Context, given: &str) -> bool {
    given
        .as_bytes()
        .ct_eq(ctx.admin_token.expose_secret().as_bytes())
        .into()
}

/// Checks `Authorization: Bearer <admin token>` in constant time.
async fn require_admin(State(ctx): State<Arc<Context>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if admin_token_matches(&ctx, given) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// One span and one log line per request: `request_id`, method, route path, status,
/// `duration_ms`. Query strings and headers are not logged.
async fn log_request(req: Request, next: Next) -> Response {
    let request_id = Uuid::new_v4();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", %request_id, %method, %path);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| tracing::info!(status, duration_ms, "request finished"));
    if let Ok(value) = request_id.to_string().parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
