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
//! every upstream (`outbound::retry_after`). Clients made by [`OpenCx::client`] share one
//! pacer per API key ([`PACE_PER_MINUTE`] requests a minute in bursts of at most
//! [`PACE_BURST`], so no 60-second window holds more than OpenCX's 100); a request waits
//! for its turn up to [`MAX_PACE_SLEEP`], past which it is not sent and fails with
//! [`OpenCxError::Paced`] and the time to wait.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::domain::catalog::{self, Diagnosis};
use crate::metrics::Metrics;

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

/// Requests a minute the bridge sends with one API key, sustained: OpenCX allows 100 ("Rate
/// limits: 100 requests per minute", docs.open.cx API reference); with [`PACE_BURST`] no
/// 60-second window holds more than 70 + 30 = 100.
pub const PACE_PER_MINUTE: u32 = 70;
/// Requests one API key may send at once after a quiet spell (a burst of handoffs is
/// fetched without waiting: about seven thin events at four requests each).
pub const PACE_BURST: u32 = 30;
/// The longest a request waits for its API key's pacer; past it the request is not sent
/// and fails with [`OpenCxError::Paced`] (the attempt waits outside the worker's slots).
pub const MAX_PACE_SLEEP: Duration = Duration::from_secs(5);

/// What the bridge's OpenCX calls share: the HTTP client (timeouts, no redirects) and the
/// pacer of each API key. `Debug` shows neither keys nor their hashes.
pub struct OpenCx {
    http: reqwest::Client,
    /// Keyed by the SHA-256 of the API key, so two orgs sharing a key share its budget.
    pacer: DefaultKeyedRateLimiter<[u8; 32]>,
    /// Where requests are counted (`handoff_opencx_requests_total`), if anywhere.
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for OpenCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCx").finish_non_exhaustive()
    }
}

impl OpenCx {
    /// Calls over `http` (see `outbound::http_client`), paced per API key at
    /// [`PACE_PER_MINUTE`] in bursts of [`PACE_BURST`].
    pub fn new(http: reqwest::Client) -> Self {
        Self::paced(http, PACE_PER_MINUTE, PACE_BURST)
    }

    /// Calls over `http`, paced at `per_minute` requests a minute per API key in bursts of
    /// at most `burst` (each at least 1): no 60-second window holds more than
    /// `per_minute + burst`.
    pub fn paced(http: reqwest::Client, per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            http,
            metrics: None,
            pacer: RateLimiter::keyed(quota),
        }
    }

    /// These calls, counted in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// A paced client for one org's `base` URL and API key.
    pub fn client<'a>(&'a self, base: Url, api_key: &'a SecretString) -> OpenCxClient<'a> {
        let key: [u8; 32] = Sha256::digest(api_key.expose_secret().as_bytes()).into();
        OpenCxClient {
            http: &self.http,
            base,
            api_key,
            pacer: Some((&self.pacer, key)),
            max_pace_sleep: MAX_PACE_SLEEP,
            metrics: self.metrics.as_deref(),
        }
    }

    /// Forgets the pacers of keys whose budget is full again (the worker calls it hourly:
    /// one entry per API key would otherwise stay for the process's life).
    pub fn forget_quiet_keys(&self) {
        self.pacer.retain_recent();
    }
}

/// Why an OpenCX call failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenCxError {
    /// Not sent: the API key's pacer holds requests back for `wait`.
    #[error("not sent: the bridge paces each API key under OpenCX's 100 requests a minute; the next request may go in {} ms", wait.as_millis())]
    Paced { wait: Duration },
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
            Self::Paced { .. } | Self::Transport { .. } => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::UnexpectedBody(_) => false,
        }
    }

    /// The answer's `Retry-After`, if it had one, or the pacer's wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Paced { wait } => Some(*wait),
            _ => None,
        }
    }

    /// The catalog's words for this failure (`domain::catalog`), the upstream text as
    /// detail (never the API key: OpenCX's `message` is at most 300 characters of its
    /// answer). A 404 is [`OPENCX_SESSION_NOT_FOUND`](catalog::OPENCX_SESSION_NOT_FOUND):
    /// callers that expect one (the connection check) read the status first.
    pub fn diagnose(&self) -> Diagnosis {
        let entry = match self {
            Self::Paced { .. } => catalog::OPENCX_RATE_LIMITED,
            Self::Transport { .. } => catalog::OPENCX_UNREACHABLE,
            Self::Status { status, .. } => match status {
                401 | 403 => catalog::OPENCX_KEY_REFUSED,
                404 => catalog::OPENCX_SESSION_NOT_FOUND,
                429 => catalog::OPENCX_RATE_LIMITED,
                408 | 500.. => catalog::OPENCX_UNREACHABLE,
                _ => catalog::OPENCX_UNEXPECTED_ANSWER,
            },
            Self::UnexpectedBody(_) => catalog::OPENCX_UNEXPECTED_ANSWER,
        };
        entry.diagnose(self.to_string())
    }

    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
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
    /// The session's `custom_data` (what `send` merged into it, among others).
    #[serde(default)]
    pub custom_data: Option<Map<String, Value>>,
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
    /// Whether the contact was verified, when OpenCX says so.
    #[serde(default)]
    pub verified: Option<bool>,
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
    pacer: Option<(&'a DefaultKeyedRateLimiter<[u8; 32]>, [u8; 32])>,
    /// How long a request may wait for the pacer before it fails as `Paced`.
    max_pace_sleep: Duration,
    metrics: Option<&'a Metrics>,
}

impl<'a> OpenCxClient<'a> {
    /// An unpaced client for `base` (e.g. [`DEFAULT_BASE_URL`]; the caller checks its
    /// scheme). The bridge's own calls use [`OpenCx::client`].
    pub fn new(http: &'a reqwest::Client, base: Url, api_key: &'a SecretString) -> Self {
        Self {
            http,
            base,
            api_key,
            pacer: None,
            max_pace_sleep: Duration::ZERO,
            metrics: None,
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

    /// Takes the API key's turn (waiting up to `max_pace_sleep`), sends one request of
    /// `kind` (`session`, `history`, `send`; the metrics' label), and reads the success
    /// answer as JSON.
    async fn call(
        &self,
        kind: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, OpenCxError> {
        // Waiting here keeps what the attempt already fetched: giving up after the session
        // read would spend its budget again on the next attempt, and a fetch that needs more
        // requests than refill between attempts would never finish.
        while let Some((pacer, key)) = &self.pacer {
            let Err(not_until) = pacer.check_key(key) else {
                break;
            };
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if wait > self.max_pace_sleep {
                self.observe(kind, "paced", None);
                return Err(OpenCxError::Paced { wait });
            }
            tokio::time::sleep(wait).await;
        }
        let started = std::time::Instant::now();
        let result = self.exchange(method, url, body).await;
        let status = match &result {
            Ok((status, _)) | Err((Some(status), _)) => status.to_string(),
            Err((None, _)) => "transport_error".to_owned(),
        };
        self.observe(kind, &status, Some(started.elapsed().as_secs_f64()));
        result.map(|(_, value)| value).map_err(|(_, err)| err)
    }

    fn observe(&self, kind: &str, status: &str, seconds: Option<f64>) {
        if let Some(metrics) = self.metrics {
            metrics.opencx_request(kind, status, seconds);
        }
    }

    /// One request and its answer: the HTTP status with the JSON of a success, or the
    /// status (`None` without an answer) with the error.
    async fn exchange(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(u16, Value), (Option<u16>, OpenCxError)> {
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
        let mut response = request.send().await.map_err(|e| (None, transport(e)))?;
        let status = response.status();
        let code = Some(status.as_u16());
        let retry_after = crate::outbound::retry_after(response.headers());
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| (code, transport(e)))? {
            if bytes.len() + chunk.len() > MAX_BODY {
                let over = format!("the answer is over {MAX_BODY} bytes");
                return Err((code, OpenCxError::UnexpectedBody(over)));
            }
            bytes.extend_from_slice(&chunk);
        }
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if !status.is_success() {
            let message = parsed
                .ok()
                .and_then(|v| v["message"].as_str().map(|m| m.chars().take(300).collect()))
                .unwrap_or_else(|| reason(status));
            let err = OpenCxError::Status {
                status: status.as_u16(),
                message,
                retry_after,
            };
            return Err((code, err));
        }
        match parsed {
            Ok(value) => Ok((status.as_u16(), value)),
            Err(e) => Err((code, OpenCxError::UnexpectedBody(e.to_string()))),
        }
    }

    /// `GET /chat/sessions/{id}`.
    pub async fn session(&self, id: &str) -> Result<Session, OpenCxError> {
        let value = self
            .call("session", Method::GET, self.session_url(id, &[]), None)
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
            let value = self.call("history", Method::GET, url, None).await?;
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

    /// `POST /chat/sessions/{id}/send` as `sender` (`agent` or `contact`) with `message`
    /// (e.g. `{"type": "text", "text": …}`) and `custom_data` (flat: strings, numbers,
    /// booleans). Returns the new message's id when OpenCX gives one.
    pub async fn send(
        &self,
        id: &str,
        sender: &str,
        message: &Value,
        custom_data: &Map<String, Value>,
    ) -> Result<Option<String>, OpenCxError> {
        let body = json!({ "sender": sender, "message": message, "custom_data": custom_data });
        let answer = self
            .call(
                "send",
                Method::POST,
                self.session_url(id, &["send"]),
                Some(&body),
            )
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
