//! The OpenCX public API subset the bridge is to use, written from OpenCX's published API
//! (`../shared/OPENCX.md` §2.1 and §3.1; `https://api.open.cx`, Bearer org API key):
//!
//! - `GET /chat/sessions/{id}`: the session (`id`, `status`, `channel {type}`, `contact
//!   {id, email, phone_number, name, custom_data}`, `language`, `handoff {summary,
//!   sentiment}` when handed off, `custom_data`), or `404`.
//! - `GET /chat/sessions/{id}/history?cursor=`: `{items: [{created_at, event}], next}`, a
//!   page of `history_page_size` items; `next` is the cursor of the next page, `null` on the
//!   last.
//! - `POST /chat/sessions/{id}/send`: `{message: {…}, custom_data?: {…}}`; `message` is
//!   required, `custom_data` values must be strings, numbers or booleans (a nested value is
//!   `400`). The message is recorded and `custom_data` merged into the session's;
//!   `201 {"success": true, "data": {"message": {"id"}}}`.
//!
//! Every route needs `Authorization: Bearer <one of the seed's api_keys>` (else `401`) and
//! counts against 100 requests a minute per key (past it, `429` with `Retry-After`,
//! seconds). Injected faults use the kinds `opencx_session`, `opencx_history` and
//! `opencx_send` (and `any`). Errors are `{"message": "…"}`. Shares no code with any
//! OpenCX client.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{respond, DropSwitch, Handled, RequestMeta, SandboxState, Shared};

/// OpenCX's documented rate limit: requests per minute per API key.
pub const REQUESTS_PER_MINUTE: usize = 100;

/// The seed's OpenCX part.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OpenCxSeed {
    /// API keys the sandbox accepts.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Items per history page (default 2, so pagination shows with short histories).
    #[serde(default = "default_page_size")]
    pub history_page_size: usize,
    /// Sessions with their history.
    #[serde(default)]
    pub sessions: Vec<SeededSession>,
    /// When set, a session id the seed does not have reads as a copy of this session with
    /// that id (soak runs hand off thousands of sessions); `send` then creates it.
    #[serde(default)]
    pub any_session: Option<Value>,
    /// Requests a minute per API key before `429` (default 100, OpenCX's documented limit).
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: usize,
}

fn default_requests_per_minute() -> usize {
    REQUESTS_PER_MINUTE
}

impl SandboxState {
    /// The session `id`: a seeded (or sent-to) one, or one made from `any_session`.
    fn opencx_session(&mut self, id: &str) -> Option<&mut SeededSession> {
        if !self.opencx_sessions.contains_key(id) {
            let mut session = self.seed.opencx.any_session.clone()?;
            session["id"] = json!(id);
            let seeded = SeededSession {
                session,
                history: Vec::new(),
            };
            self.opencx_sessions.insert(id.to_owned(), seeded);
        }
        self.opencx_sessions.get_mut(id)
    }
}

/// A session and its history items (`{created_at, event}`), oldest first.
#[derive(Debug, Clone, Deserialize)]
pub struct SeededSession {
    pub session: Value,
    #[serde(default)]
    pub history: Vec<Value>,
}

fn default_page_size() -> usize {
    2
}

/// An OpenCX error answer, `{"message": …}`.
pub(super) fn error(status: StatusCode, message: &str) -> Handled {
    let mut handled = Handled::json(status, json!({ "message": message }));
    handled.error_code = Some(message.to_owned());
    handled
}

/// Whether a request kind is OpenCX's (not Dataverse's: no service protection limits).
pub(super) fn is_opencx(kind: &str) -> bool {
    kind.starts_with("opencx_")
}

/// The answer that refuses a request: `401` when `Authorization: Bearer <key>` names no
/// key of the seed, `429` with `Retry-After` (seconds until the key is under its rate limit
/// again) past the seed's `requests_per_minute` (100 by default); `None` to handle it.
fn refusal(state: &Shared, parts: &axum::http::request::Parts) -> Option<Handled> {
    let key = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut s = state.lock().expect("poisoned");
    if key.is_empty() || !s.seed.opencx.api_keys.iter().any(|k| k == key) {
        return Some(error(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let now = s.clock.instant();
    let minute = std::time::Duration::from_secs(60);
    let limit = s.seed.opencx.requests_per_minute;
    let window = s.opencx_window.entry(key.to_owned()).or_default();
    if let Some(wait) = super::control::window_wait(window, now, minute, limit) {
        let mut refused = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        if let Ok(v) = wait.to_string().parse() {
            refused.response.headers_mut().insert("retry-after", v);
        }
        return Some(refused);
    }
    window.push_back(now);
    None
}

/// Runs `answer` for a request of `kind` after the API key, the rate limit and the faults.
async fn serve(
    state: Shared,
    kind: &str,
    req: Request,
    answer: impl FnOnce(&Shared, Option<Value>) -> Handled + Send,
) -> Response {
    let switch = req.extensions().get::<DropSwitch>().cloned();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let meta = RequestMeta::of(kind, &parts, body.clone());
    let state2 = state.clone();
    respond(&state, meta, switch, || async move {
        match refusal(&state2, &parts) {
            None => answer(&state2, body),
            Some(refused) => refused,
        }
    })
    .await
}

pub(super) async fn session(
    State(state): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    serve(state, "opencx_session", req, |state, _| {
        let mut s = state.lock().expect("poisoned");
        match s.opencx_session(&id) {
            Some(seeded) => Handled::json(StatusCode::OK, seeded.session.clone()),
            None => error(StatusCode::NOT_FOUND, "Session not found"),
        }
    })
    .await
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    cursor: Option<String>,
}

pub(super) async fn history(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
    req: Request,
) -> Response {
    serve(state, "opencx_history", req, |state, _| {
        let mut guard = state.lock().expect("poisoned");
        let page = guard.seed.opencx.history_page_size.max(1);
        let Some(seeded) = guard.opencx_session(&id) else {
            return error(StatusCode::NOT_FOUND, "Session not found");
        };
        let start = match query.cursor.as_deref().map(str::parse::<usize>) {
            None => 0,
            Some(Ok(n)) if n <= seeded.history.len() => n,
            Some(_) => return error(StatusCode::BAD_REQUEST, "Invalid cursor"),
        };
        let end = (start + page).min(seeded.history.len());
        let next = (end < seeded.history.len()).then(|| end.to_string());
        Handled::json(
            StatusCode::OK,
            json!({ "items": seeded.history[start..end], "next": next }),
        )
    })
    .await
}

pub(super) async fn send(
    State(state): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    serve(state, "opencx_send", req, |state, body| {
        let mut guard = state.lock().expect("poisoned");
        let s = &mut *guard;
        if s.opencx_session(&id).is_none() {
            return error(StatusCode::NOT_FOUND, "Session not found");
        }
        let Some(body) = body.filter(Value::is_object) else {
            return error(StatusCode::BAD_REQUEST, "The body must be a JSON object");
        };
        if !body["message"].is_object() {
            return error(StatusCode::BAD_REQUEST, "message is required");
        }
        let custom = match &body["custom_data"] {
            Value::Null => serde_json::Map::new(),
            Value::Object(map) => map.clone(),
            _ => return error(StatusCode::BAD_REQUEST, "custom_data must be an object"),
        };
        if custom
            .values()
            .any(|v| v.is_object() || v.is_array() || v.is_null())
        {
            return error(
                StatusCode::BAD_REQUEST,
                "custom_data values must be strings, numbers or booleans",
            );
        }
        let message_id = Uuid::new_v4();
        s.opencx_sent.push(json!({
            "session_id": id,
            "sender": body["sender"],
            "message_id": message_id,
            "message": body["message"],
            "custom_data": custom,
        }));
        let Some(seeded) = s.opencx_sessions.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "Session not found");
        };
        let session = &mut seeded.session;
        if !session["custom_data"].is_object() {
            session["custom_data"] = json!({});
        }
        for (k, v) in custom {
            session["custom_data"][k] = v;
        }
        Handled::json(
            StatusCode::CREATED,
            json!({ "success": true, "data": { "message": { "id": message_id } } }),
        )
    })
    .await
}
