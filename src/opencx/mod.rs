//! A client for the OpenCX public API calls the bridge needs, written from OpenCX's
//! published API (`../shared/OPENCX.md` §2.1, §3.1–3.3; base URL `https://api.open.cx`,
//! `Authorization: Bearer <org API key>`, 100 requests a minute per key):
//!
//! - [`OpenCxClient::session`]: `GET /chat/sessions/{id}`;
//! - [`OpenCxClient::history`]: `GET /chat/sessions/{id}/history`, following the `next`
//!   cursor, at most [`MAX_HISTORY_PAGES`] pages and [`MAX_HISTORY_ITEMS`] items;
//! - [`OpenCxClient::send`]: `POST /chat/sessions/{id}/send` with a message and flat
//!   `custom_data` (the one documented way to put a value on the session).
//!
//! Every answer is read up to [`MAX_BODY`] bytes; `Retry-After` is read and clamped as for
//! every upstream (`outbound::retry_after`). The handoff job does not use it yet (issue 11).

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// OpenCX's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.open.cx";
/// The longest answer read from OpenCX: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;
/// History pages followed at most for one session.
pub const MAX_HISTORY_PAGES: usize = 50;
/// History items kept at most for one session.
pub const MAX_HISTORY_ITEMS: usize = 2_000;

/// Why an OpenCX call failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenCxError {
    /// No HTTP answer: connect failure, timeout, reset, or the body was cut off.
    #[error("OpenCX request failed: {detail}")]
    Transport {
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP error answer, with OpenCX's `message` when the body had one.
    #[error("OpenCX answered HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A success status with a body the bridge cannot read, or one over [`MAX_BODY`].
    #[error("OpenCX answered with an unexpected body: {0}")]
    UnexpectedBody(String),
}

impl OpenCxError {
    /// Whether the same call may succeed later: no answer, 408, 429 or 5xx. A refused key
    /// (401/403), an unknown session (404) and other 4xx answers fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::UnexpectedBody(_) => false,
        }
    }

    /// The answer's `Retry-After`, if it had one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A session as the bridge reads it (fields it does not use are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub id: String,
    pub channel: Channel,
    #[serde(default)]
    pub contact: Option<Contact>,
    #[serde(default)]
    pub language: Option<String>,
    /// Present when the session was handed off.
    #[serde(default)]
    pub handoff: Option<Handoff>,
    /// Whether the session's contact was verified (widget authentication), when OpenCX
    /// says so.
    #[serde(default)]
    pub verified: Option<bool>,
}

/// `channel {type}`: `web`, `web_voice`, `phone_voice`, `email`, `sms`, `whatsapp`, `api`, or
/// one OpenCX adds later.
#[derive(Debug, Clone, Deserialize)]
pub struct Channel {
    #[serde(rename = "type")]
    pub kind: String,
}

/// The session's contact.
#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `handoff {summary, sentiment}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Handoff {
    pub summary: String,
    #[serde(default)]
    pub sentiment: Option<String>,
}

/// A session's history: items `{created_at, event}`, oldest first, and whether it was cut
/// at [`MAX_HISTORY_PAGES`] or [`MAX_HISTORY_ITEMS`].
#[derive(Debug, Clone, Default)]
pub struct History {
    pub items: Vec<Value>,
    pub truncated: bool,
}

#[derive(Deserialize)]
struct HistoryPage {
    #[serde(default)]
    items: Vec<Value>,
    #[serde(default)]
    next: Option<String>,
}

/// Calls for one org: its base URL and API key over a shared HTTP client (see
/// `outbound::http_client`: timeouts set, no redirects).
pub struct OpenCxClient<'a> {
    http: &'a reqwest::Client,
    base: Url,
    api_key: &'a SecretString,
}

impl<'a> OpenCxClient<'a> {
    /// A client for `base` (e.g. [`DEFAULT_BASE_URL`]; the caller checks its scheme).
    pub fn new(http: &'a reqwest::Client, base: Url, api_key: &'a SecretString) -> Self {
        Self {
            http,
            base,
            api_key,
        }
    }

    /// `base` + `/chat/sessions/{id}` + `tail`, the id as one percent-encoded segment.
    fn session_url(&self, id: &str, tail: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["chat", "sessions", id]);
            segments.extend(tail);
        }
        url
    }

    /// Sends one request and reads the success answer as JSON.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, OpenCxError> {
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.api_key.expose_secret())
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source: reqwest::Error| OpenCxError::Transport {
            detail: crate::outbound::describe_transport_error(&source),
            source,
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = crate::outbound::retry_after(response.headers());
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(OpenCxError::UnexpectedBody(format!(
                    "the answer is over {MAX_BODY} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if !status.is_success() {
            let message = parsed
                .ok()
                .and_then(|v| v["message"].as_str().map(|m| m.chars().take(300).collect()))
                .unwrap_or_else(|| reason(status));
            return Err(OpenCxError::Status {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        parsed.map_err(|e| OpenCxError::UnexpectedBody(e.to_string()))
    }

    /// `GET /chat/sessions/{id}`.
    pub async fn session(&self, id: &str) -> Result<Session, OpenCxError> {
        let value = self
            .call(Method::GET, self.session_url(id, &[]), None)
            .await?;
        serde_json::from_value(value).map_err(|e| OpenCxError::UnexpectedBody(e.to_string()))
    }

    /// `GET /chat/sessions/{id}/history`, following `next` until the last page or a bound.
    pub async fn history(&self, id: &str) -> Result<History, OpenCxError> {
        let mut history = History::default();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_HISTORY_PAGES {
            let mut url = self.session_url(id, &["history"]);
            if let Some(cursor) = &cursor {
                url.query_pairs_mut().append_pair("cursor", cursor);
            }
            let value = self.call(Method::GET, url, None).await?;
            let page: HistoryPage = serde_json::from_value(value)
                .map_err(|e| OpenCxError::UnexpectedBody(e.to_string()))?;
            let room = MAX_HISTORY_ITEMS - history.items.len();
            if page.items.len() > room {
                history.items.extend(page.items.into_iter().take(room));
                history.truncated = true;
                return Ok(history);
            }
            history.items.extend(page.items);
            match page.next.filter(|n| !n.is_empty()) {
                Some(next) => cursor = Some(next),
                None => return Ok(history),
            }
        }
        history.truncated = true;
        Ok(history)
    }

    /// `POST /chat/sessions/{id}/send` with `message` and `custom_data` (flat: strings,
    /// numbers, booleans). Returns the new message's id when OpenCX gives one.
    pub async fn send(
        &self,
        id: &str,
        message: &Value,
        custom_data: &Map<String, Value>,
    ) -> Result<Option<String>, OpenCxError> {
        let body = json!({ "message": message, "custom_data": custom_data });
        let answer = self
            .call(Method::POST, self.session_url(id, &["send"]), Some(&body))
            .await?;
        Ok(answer["data"]["message"]["id"].as_str().map(str::to_owned))
    }
}

fn reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("no reason given")
        .to_owned()
}
