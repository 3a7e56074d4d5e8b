//! `GET /status` (every org, one line each), `GET /status?org=` (one org's page) and
//! `GET /status/{org}/sessions/{session}`: the troubleshooting page, server-rendered
//! (minijinja, auto-escaped) from the same facts as `GET /v1/status`. The
//! admin token (or the viewer token, which only reads) is accepted as a Bearer token or as
//! the HTTP Basic password, so a browser's sign-in prompt works.
//!
//! The admin acts from the page with POST forms (retry a handoff or resend its callback,
//! retry every failed one, check the connection again). Each form carries the CSRF token
//! (`AppState::csrf_token`), and a request whose `Origin` is another site is refused too:
//! a browser would send the Basic credentials it holds with a cross-site form as well.
//! Errors on these routes are HTML pages, not JSON.

use std::sync::{Arc, LazyLock};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde::Serialize;

use super::extract::SessionPath;
use super::lookup::{existing_handoff, existing_org, StatusQuery};
use super::views::HandoffRecord;
use crate::diagnostics::{Explanation, StatusReport};
use crate::http::error::ApiError;
use crate::http::extract::OrgIdPath;
use crate::http::state::{AppState, Role};

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_filter("path_segment", path_segment);
    env.add_filter("when", super::times::when);
    env.add_filter("duration", super::times::duration);
    env.add_function("record_url", record_url);
    env.add_global(
        "local_times_script",
        minijinja::Value::from_safe_string(super::times::LOCAL_TIMES_SCRIPT.to_owned()),
    );
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

/// The link that opens a Dynamics record (`etn` its table's logical name, `id` its GUID) in
/// the environment's app: `{environment}/main.aspx?pagetype=entityrecord&etn=…&id=…`
/// (Microsoft Learn, "Open forms, views, dialogs, and reports with a URL").
fn record_url(environment_url: String, table: String, id: String) -> String {
    let encode = |v: &str| percent_encoding::utf8_percent_encode(v, SEGMENT).to_string();
    format!(
        "{}/main.aspx?pagetype=entityrecord&etn={}&id={}",
        environment_url.trim_end_matches('/'),
        encode(&table),
        encode(&id)
    )
}

/// The Content-Security-Policy of every HTML answer: only the page's own script (by its
/// hash), style only inline, forms to this origin, no framing.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    HeaderValue::from_str(&format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        *super::times::LOCAL_TIMES_HASH
    ))
    .expect("the policy is ASCII")
});

/// What every HTML answer carries: [`CSP`], no framing (clickjacking), no MIME sniffing, no
/// referrer to other sites (ids in URLs stay here).
fn secure_html_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Nothing leaves for another site (ids in URLs stay here); same-origin requests keep
        // their `Origin`, which the forms check (with `no-referrer` a browser sends `null`).
        (header::REFERRER_POLICY, "same-origin"),
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

/// What the request's token may do on the page, if anything.
fn role(ctx: &AppState, headers: &HeaderMap) -> Option<Role> {
    presented_token(headers).and_then(|t| ctx.role(&t))
}

/// The notices a form's redirect may ask the page to show (`?done=`): fixed sentences, so
/// a link cannot make the page say anything else.
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "retried" => "Retried: the handoff (or its callback) is queued again and due now.",
        "nothing" => "Nothing to retry: the handoff did not fail and no callback waits.",
        "retried_all" => "Every failed handoff and callback of the org is queued again.",
        "checked" => "The connection was checked again; the card shows the verdict.",
        _ => return None,
    })
}

/// `?done=` of a page after a form.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// The body of every form: the CSRF token.
#[derive(Debug, serde::Deserialize)]
pub struct FormToken {
    csrf: Option<String>,
}

/// An error on an HTML route, as a page: its status, code and sentence.
fn html_error(err: &ApiError) -> Response {
    let (status, code) = err.status_and_code();
    let page = Page {
        error: Some(PageError {
            status: status.as_u16(),
            code,
            message: err.to_string(),
        }),
        ..Page::default()
    };
    let mut response = render(&page).unwrap_or_else(|_| (status, err.to_string()).into_response());
    *response.status_mut() = status;
    response
}

/// Refuses a form post that is not the admin's own: another site's `Origin`, a missing or
/// wrong CSRF token, or a token that may not act. `None` when it may go on.
fn refuse_form(ctx: &AppState, headers: &HeaderMap, form: &FormToken) -> Option<Response> {
    let Some(role) = role(ctx, headers) else {
        return Some(challenge());
    };
    let forbidden = |why: &str| {
        let mut response = html_error(&ApiError::Forbidden(why.to_owned()));
        secure_html_headers(response.headers_mut());
        Some(response)
    };
    if role != Role::Admin {
        return forbidden(
            "the viewer token can read the page but not act; sign in with the admin token",
        );
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    // `null` (a privacy setting, a sandboxed frame) says nothing: the CSRF token decides.
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if let Some(origin) = origin.filter(|o| *o != "null") {
        let same = host
            .is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"));
        if !same {
            return forbidden("the form was sent from another site");
        }
    }
    if !form.csrf.as_deref().is_some_and(|t| ctx.csrf_matches(t)) {
        return forbidden(
            "the form's CSRF token is missing or wrong; reload the page and try again",
        );
    }
    None
}

/// `303 See Other` to `location` (after a form).
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// What `templates/status.html` renders: the overview of every org or one org's page
/// (`status`, `filter`, `next_page`), or one handoff (`detail`).
#[derive(Serialize, Default)]
struct Page<'a> {
    /// Now, Unix ms: what the times' "… ago" counts from.
    now_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusReport>,
    filter: PageFilter<'a>,
    /// The link to the org's next, older page of handoffs, with the same filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<SessionDetail>,
    /// The forms' CSRF token, for the admin only (the viewer sees no forms).
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
    /// What the last form did (`notice`).
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<&'static str>,
    /// An error page instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<PageError>,
}

/// An error shown as a page.
#[derive(Serialize)]
struct PageError {
    status: u16,
    code: &'static str,
    message: String,
}

/// The org page's filter, as the form shows it.
#[derive(Serialize, Default)]
struct PageFilter<'a> {
    org: Option<String>,
    state: Option<&'a str>,
    session: Option<String>,
    customer: Option<String>,
}

/// One handoff with its explanation, and the environment its records open in.
#[derive(Serialize)]
struct SessionDetail {
    record: HandoffRecord,
    explanation: Explanation,
    environment_url: Option<String>,
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

/// `GET /status`: every org, one line each; `GET /status?org=&state=&session=&customer=&before=&limit=`:
/// that org's page, its cards and a page of its handoffs.
#[utoipa::path(get, path = "/status", tag = "status",
    params(
        ("org" = Option<String>, Query, description = "This org's page (404 when there is no such org)"),
        ("state" = Option<String>, Query, description = "With `org`: queued, processing, succeeded, failed or skipped"),
        ("session" = Option<String>, Query, description = "With `org`: session ids containing this text"),
        ("customer" = Option<String>, Query, description = "With `org`: customers whose name or email contains this text"),
        ("before" = Option<String>, Query, description = "With `org`: the page after this cursor (the Older handoffs link)"),
        ("limit" = Option<u32>, Query, description = "With `org`: handoffs per page, 1–500 (default 20)"),
    ),
    responses(
        (status = 200, description = "The troubleshooting page", content_type = "text/html"),
        (status = 401, description = "Sign in: `WWW-Authenticate: Basic`; the admin token is the password"),
    ), security(("admin_token" = []), ("admin_basic" = [])))]
pub async fn page(
    State(ctx): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<StatusQuery>,
    Query(done): Query<Done>,
) -> Response {
    let Some(role) = role(&ctx, &headers) else {
        return challenge();
    };
    overview(&ctx, role, query, done)
        .await
        .unwrap_or_else(|e| html_error(&e))
}

async fn overview(
    ctx: &AppState,
    role: Role,
    query: StatusQuery,
    done: Done,
) -> Result<Response, ApiError> {
    let filter = query.filter()?;
    let now_ms = ctx.clock.now_ms();
    let status = crate::diagnostics::status(&ctx.store, &ctx.vault, &filter, now_ms).await?;
    if let (Some(org), true) = (&filter.org, status.orgs.is_empty()) {
        return Err(ApiError::UnknownOrg(org.clone()));
    }
    let next_page = status
        .orgs
        .first()
        .and_then(|o| o.next_before.as_deref())
        .filter(|_| filter.org.is_some())
        .map(|before| {
            let mut link = url::form_urlencoded::Serializer::new(String::new());
            for (key, value) in [
                ("org", filter.org.as_deref()),
                ("state", filter.state.map(|s| s.as_str())),
                ("session", filter.session.as_deref()),
                ("customer", filter.customer.as_deref()),
                ("before", Some(before)),
                ("limit", query.limit.as_deref()),
            ] {
                if let Some(value) = value {
                    link.append_pair(key, value);
                }
            }
            format!("/status?{}", link.finish())
        });
    render(&Page {
        now_ms,
        status: Some(status),
        next_page,
        filter: PageFilter {
            org: filter.org,
            state: filter.state.map(|s| s.as_str()),
            session: filter.session,
            customer: filter.customer,
        },
        csrf: (role == Role::Admin).then(|| ctx.csrf_token()),
        notice: notice(done.done.as_deref()),
        ..Page::default()
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
    Query(done): Query<Done>,
) -> Response {
    let Some(role) = role(&ctx, &headers) else {
        return challenge();
    };
    timeline(&ctx, role, &org_id, &session_id, done)
        .await
        .unwrap_or_else(|e| html_error(&e))
}

async fn timeline(
    ctx: &AppState,
    role: Role,
    org_id: &crate::domain::OrgId,
    session_id: &crate::domain::SessionId,
    done: Done,
) -> Result<Response, ApiError> {
    let org = existing_org(ctx, org_id).await?;
    let handoff = existing_handoff(ctx, &org, session_id).await?;
    let events = ctx.store.events(&handoff.handoff_id).await?;
    let callbacks = ctx.store.callbacks(&handoff.handoff_id).await?;
    let connection = ctx.store.connection(&org.org_id).await?;
    render(&Page {
        now_ms: ctx.clock.now_ms(),
        detail: Some(SessionDetail {
            environment_url: connection.map(|c| c.environment_url),
            explanation: crate::diagnostics::explain(
                &handoff,
                crate::http::views::callback_trouble(&callbacks).as_ref(),
            ),
            record: HandoffRecord::new(&handoff, &events, &callbacks),
        }),
        csrf: (role == Role::Admin).then(|| ctx.csrf_token()),
        notice: notice(done.done.as_deref()),
        ..Page::default()
    })
}

/// The path of a session's page.
fn session_page(org: &str, session: &str) -> String {
    format!(
        "/status/{}/sessions/{}",
        path_segment(org.to_owned()),
        path_segment(session.to_owned())
    )
}

/// `POST /status/{org}/sessions/{session}/retry` (the page's Retry / Resend callback):
/// what `POST /v1/orgs/{org}/sessions/{session}/retry` does, then back to the session's
/// page with a notice.
#[utoipa::path(post, path = "/status/{org_id}/sessions/{session_id}/retry", tag = "status",
    params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC), ("session_id" = String, Path, description = super::openapi::SESSION_ID_DOC)),
    request_body(content = String, description = "`csrf=<the page's token>`", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Back to the session's page (`?done=retried` or `?done=nothing`)"),
        (status = 401, description = "Sign in: `WWW-Authenticate: Basic`"),
        (status = 403, description = "Not the admin, another site's form, or no CSRF token (an HTML page)", content_type = "text/html"),
    ), security(("admin_token" = []), ("admin_basic" = [])))]
pub async fn retry_form(
    State(ctx): State<Arc<AppState>>,
    headers: HeaderMap,
    SessionPath(org_id, session_id): SessionPath,
    Form(form): Form<FormToken>,
) -> Response {
    let retried = async {
        let org = existing_org(&ctx, &org_id).await?;
        let handoff = existing_handoff(&ctx, &org, &session_id).await?;
        let done = match crate::http::admin::retry_handoff(&ctx, &handoff).await {
            Ok(_) => "retried",
            Err(ApiError::NothingToRetry { .. }) => "nothing",
            Err(e) => return Err(e),
        };
        Ok(format!(
            "{}?done={done}",
            session_page(org_id.as_str(), session_id.as_str())
        ))
    };
    act(&ctx, &headers, &form, retried).await
}

/// A form's answer: refused (see [`refuse_form`]) before `action` runs, else `303` to the
/// page `action` names, or its error as a page.
async fn act(
    ctx: &AppState,
    headers: &HeaderMap,
    form: &FormToken,
    action: impl std::future::Future<Output = Result<String, ApiError>>,
) -> Response {
    if let Some(refused) = refuse_form(ctx, headers, form) {
        return refused;
    }
    match action.await {
        Ok(location) => see_other(&location),
        Err(e) => html_error(&e),
    }
}

/// `POST /status/{org}/retry-failed` (the page's Retry all failed): what `POST
/// /v1/orgs/{org}/handoffs/retry-failed` does, then back to the org's page.
#[utoipa::path(post, path = "/status/{org_id}/retry-failed", tag = "status",
    params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    request_body(content = String, description = "`csrf=<the page's token>`", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Back to the org's page (`?done=retried_all`)"),
        (status = 401, description = "Sign in: `WWW-Authenticate: Basic`"),
        (status = 403, description = "Not the admin, another site's form, or no CSRF token (an HTML page)", content_type = "text/html"),
    ), security(("admin_token" = []), ("admin_basic" = [])))]
pub async fn retry_failed_form(
    State(ctx): State<Arc<AppState>>,
    headers: HeaderMap,
    OrgIdPath(org_id): OrgIdPath,
    Form(form): Form<FormToken>,
) -> Response {
    let retried = async {
        let org = existing_org(&ctx, &org_id).await?;
        ctx.store
            .replay_failed(&org.org_id, None, ctx.clock.now_ms())
            .await?;
        ctx.wake.org(&org.org_id);
        Ok(org_page(&org.org_id, "retried_all"))
    };
    act(&ctx, &headers, &form, retried).await
}

/// The org's part of the page after a form, with the notice `done`.
fn org_page(org_id: &str, done: &str) -> String {
    format!(
        "/status?org={}&done={done}",
        path_segment(org_id.to_owned())
    )
}

/// `POST /status/{org}/connection/check` (the page's Check connection again): what `POST
/// /v1/orgs/{org}/connection/check` does, then back to the org's page.
#[utoipa::path(post, path = "/status/{org_id}/connection/check", tag = "status",
    params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC)),
    request_body(content = String, description = "`csrf=<the page's token>`", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Back to the org's page (`?done=checked`)"),
        (status = 401, description = "Sign in: `WWW-Authenticate: Basic`"),
        (status = 403, description = "Not the admin, another site's form, or no CSRF token (an HTML page)", content_type = "text/html"),
        (status = 404, description = "No such org, or no connection (an HTML page)", content_type = "text/html"),
    ), security(("admin_token" = []), ("admin_basic" = [])))]
pub async fn check_form(
    State(ctx): State<Arc<AppState>>,
    headers: HeaderMap,
    OrgIdPath(org_id): OrgIdPath,
    Form(form): Form<FormToken>,
) -> Response {
    let checked = async {
        let org = existing_org(&ctx, &org_id).await?;
        let conn = ctx
            .store
            .connection(&org.org_id)
            .await?
            .ok_or_else(|| ApiError::NotConnected(org.org_id.clone()))?;
        ctx.org_rules()
            .check_again(&conn, ctx.clock.now_ms())
            .await?;
        ctx.wake.org(&org.org_id);
        Ok(org_page(&org.org_id, "checked"))
    };
    act(&ctx, &headers, &form, checked).await
}
