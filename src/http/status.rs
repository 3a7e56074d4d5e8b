//! `GET /status` and `GET /status/{org}/sessions/{session}`: the troubleshooting page,
//! server-rendered (minijinja, auto-escaped) from the same facts as `GET /v1/status`. The
//! admin token is accepted as a Bearer token or as the HTTP Basic password, so a browser's
//! sign-in prompt works.

use std::sync::{Arc, LazyLock};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

use super::extract::SessionPath;
use super::lookup::{existing_handoff, existing_org, list_options, StatusQuery};
use super::views::HandoffRecord;
use crate::diagnostics::{Explanation, StatusReport};
use crate::http::error::ApiError;
use crate::http::state::AppState;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_filter("path_segment", path_segment);
    env.add_template("status.html", include_str!("../../templates/status.html"))
        .expect("the status template parses");
    env
});

/// What [`path_segment`] encodes: everything but ASCII letters, digits, `-`, `_` and `~`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `value` as one URL path segment, so `/`, `?`, `#` and `.` in an id can
/// never make a link point at another path. (A browser still reads a segment that is
/// exactly `%2E%2E` as `..`; such a session id links one level up, to a 404.)
fn path_segment(value: String) -> String {
    percent_encoding::utf8_percent_encode(&value, SEGMENT).to_string()
}

/// What every HTML answer carries: no script, style only inline, forms to this origin, no
/// framing (clickjacking), no MIME sniffing, no referrer (ids in URLs stay here).
fn secure_html_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The token a request presents: `Authorization: Bearer <t>`, or the password of
/// `Authorization: Basic base64(user:password)` (any user name).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.to_owned());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

fn challenge() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "Sign in with any user name and the admin token (HANDOFF_ADMIN_TOKEN) as the password.\n",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"handoff-bridge\", charset=\"UTF-8\""),
    );
    secure_html_headers(response.headers_mut());
    response
}

fn authorized(ctx: &AppState, headers: &HeaderMap) -> bool {
    presented_token(headers).is_some_and(|t| ctx.admin_token_matches(&t))
}

/// What `templates/status.html` renders: the overview (`status`, `org_ids`, `filter`) or one
/// handoff (`detail`).
#[derive(Serialize, Default)]
struct Page<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusReport>,
    org_ids: Vec<String>,
    filter: PageFilter<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<SessionDetail>,
}

/// The overview's filter, as the form shows it.
#[derive(Serialize, Default)]
struct PageFilter<'a> {
    org: Option<String>,
    state: Option<&'a str>,
    session: Option<String>,
}

/// One handoff with its explanation.
#[derive(Serialize)]
struct SessionDetail {
    record: HandoffRecord,
    explanation: Explanation,
}

fn render(context: &Page<'_>) -> Result<Response, ApiError> {
    let html = TEMPLATES
        .get_template("status.html")
        .and_then(|t| t.render(minijinja::value::Serde(context)))
        .map_err(|e| ApiError::Render(e.to_string()))?;
    let mut response = Html(html).into_response();
    secure_html_headers(response.headers_mut());
    Ok(response)
}

/// `GET /status?org=&state=&session=&limit=`.
#[utoipa::path(get, path = "/status", tag = "status",
    params(
        ("org" = Option<String>, Query, description = "Only this org"),
        ("state" = Option<String>, Query, description = "queued, processing, succeeded, failed or skipped"),
        ("session" = Option<String>, Query, description = "Session ids containing this text"),
    ),
    responses(
        (status = 200, description = "The troubleshooting page", content_type = "text/html"),
        (status = 401, description = "Sign in: `WWW-Authenticate: Basic`; the admin token is the password"),
    ), security(("admin_token" = []), ("admin_basic" = [])))]
pub async fn page(
    State(ctx): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<StatusQuery>,
) -> Result<Response, ApiError> {
    if !authorized(&ctx, &headers) {
        return Ok(challenge());
    }
    let (state, limit) = list_options(query.state.as_deref(), query.limit.as_deref(), 20)?;
    let filter = crate::diagnostics::Filter {
        org: query.org.clone().filter(|o| !o.is_empty()),
        state,
        session: query.session.clone(),
        limit,
    };
    let status =
        crate::diagnostics::status(&ctx.store, &ctx.vault, &filter, ctx.clock.now_ms()).await?;
    let org_ids: Vec<String> = ctx
        .store
        .orgs()
        .await?
        .into_iter()
        .map(|o| o.org_id)
        .collect();
    render(&Page {
        status: Some(status),
        org_ids,
        filter: PageFilter {
            org: filter.org,
            state: state.map(|s| s.as_str()),
            session: query.session,
        },
        detail: None,
    })
}

/// `GET /status/{org}/sessions/{session}`: one handoff with its timeline.
#[utoipa::path(get, path = "/status/{org_id}/sessions/{session_id}", tag = "status",
    params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC), ("session_id" = String, Path, description = super::openapi::SESSION_ID_DOC)),
    responses(
        (status = 200, description = "One handoff's timeline", content_type = "text/html"),
        (status = 401, description = "Sign in: `WWW-Authenticate: Basic`"),
    ), security(("admin_token" = []), ("admin_basic" = [])))]
pub async fn session(
    State(ctx): State<Arc<AppState>>,
    headers: HeaderMap,
    SessionPath(org_id, session_id): SessionPath,
) -> Result<Response, ApiError> {
    if !authorized(&ctx, &headers) {
        return Ok(challenge());
    }
    let org = existing_org(&ctx, &org_id).await?;
    let handoff = existing_handoff(&ctx, &org, &session_id).await?;
    let events = ctx.store.events(&handoff.handoff_id).await?;
    let callbacks = ctx.store.callbacks(&handoff.handoff_id).await?;
    render(&Page {
        detail: Some(SessionDetail {
            explanation: crate::diagnostics::explain(
                &handoff,
                crate::http::views::callback_trouble(&callbacks).as_ref(),
            ),
            record: HandoffRecord::new(&handoff, &events, &callbacks),
        }),
        ..Page::default()
    })
}
