//! HTTP routes only: parse, call the domain, map to responses.

pub mod admin;
pub mod error;
pub mod extract;
mod lookup;
pub mod openapi;
mod operations;
pub mod server;
pub mod state;
pub mod status;
pub mod times;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::http::error::ApiError;
pub use state::AppState;

/// The route table, in three parts that get different middleware: the admin routes (behind
/// the admin token), the webhook route (counted by answer status), and the rest. It is also
/// the OpenAPI document (`utoipa-axum` collects each handler's `#[utoipa::path]`), so a
/// route cannot be served undocumented or documented unserved.
struct RouteTable {
    admin: OpenApiRouter<Arc<AppState>>,
    /// Behind the admin or the viewer token.
    read: OpenApiRouter<Arc<AppState>>,
    webhooks: OpenApiRouter<Arc<AppState>>,
    public: OpenApiRouter<Arc<AppState>>,
}

fn route_table() -> RouteTable {
    let admin = OpenApiRouter::new()
        .routes(routes!(admin::put_org, admin::get_org))
        .routes(routes!(admin::rotate_secret))
        .routes(routes!(admin::revoke_previous_secret))
        .routes(routes!(admin::test_connection))
        .routes(routes!(
            admin::save_connection,
            admin::get_connection,
            admin::delete_connection
        ))
        .routes(routes!(admin::check_connection))
        .routes(routes!(
            admin::save_opencx,
            admin::get_opencx,
            admin::delete_opencx
        ))
        .routes(routes!(admin::check_opencx))
        .routes(routes!(admin::list_sessions))
        .routes(routes!(admin::get_session))
        .routes(routes!(admin::retry_session))
        .routes(routes!(admin::retry_failed))
        .routes(routes!(operations::metrics));
    // What the viewer token may read as well.
    let read = OpenApiRouter::new().routes(routes!(admin::status));
    let webhooks = OpenApiRouter::new().routes(routes!(webhooks::receive));
    let public = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::openapi_json))
        .routes(routes!(status::page))
        .routes(routes!(status::session))
        .routes(routes!(status::retry_form))
        .routes(routes!(status::retry_failed_form))
        .routes(routes!(status::check_form));
    RouteTable {
        admin,
        read,
        webhooks,
        public,
    }
}

/// The OpenAPI document of the route table.
pub fn api_document() -> utoipa::openapi::OpenApi {
    let table = route_table();
    table
        .public
        .merge(table.webhooks)
        .merge(table.admin)
        .merge(table.read)
        .into_openapi()
}

/// The whole HTTP API.
pub fn router(ctx: Arc<AppState>) -> Router {
    let table = route_table();
    let admin = table
        .admin
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_admin));
    let read = table
        .read
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_reader));
    let webhooks = table
        .webhooks
        .route_layer(middleware::from_fn_with_state(ctx.clone(), count_webhook));
    let (router, document) = table
        .public
        .merge(webhooks)
        .merge(admin)
        .merge(read)
        .split_for_parts();
    router
        .layer(Extension(Arc::new(document)))
        .layer(middleware::from_fn(log_request))
        .with_state(ctx)
}

/// Counts each webhook delivery by org (when the route found it: [`webhooks::KnownOrg`])
/// and the status it was answered with.
async fn count_webhook(State(ctx): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let org = response.extensions().get::<webhooks::KnownOrg>();
    ctx.metrics
        .webhook_answered(org.map(|o| o.0.as_str()), response.status().as_u16());
    response
}

/// The `Authorization: Bearer` token of a request, or `""`.
fn bearer(req: &Request) -> &str {
    req.headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

/// Checks `Authorization: Bearer <admin token>` in constant time.
async fn require_admin(State(ctx): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if ctx.admin_token_matches(bearer(&req)) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Checks `Authorization: Bearer <admin or viewer token>` in constant time.
async fn require_reader(State(ctx): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if ctx.role(bearer(&req)).is_some() {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// One span and one log line per request: `request_id`, method, route path, status,
/// `duration_ms`. Query strings and headers are not logged. The request id is the caller's
/// `x-request-id` when it is 1–64 characters of `A-Z a-z 0-9 - _ .` (so a proxy's id
/// follows the request through), else a new UUID; the answer carries it back.
async fn log_request(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_request_id(id))
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", %request_id, %method, %path);
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| tracing::info!(status, duration_ms, "request finished"));
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Whether an incoming `x-request-id` may be logged and echoed as it is.
fn is_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
