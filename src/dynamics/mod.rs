//! The Dataverse Web API client (v9.2), its Entra ID token cache and OData helpers.
//!
//! This module knows Dataverse and Entra ID; it knows nothing about OpenCX sessions.

pub mod client;
pub mod odata;
pub mod throttle;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

pub use client::{CreateOutcome, DataverseClient, DataverseError, Workstream};
pub use throttle::{Gates, Paused};
pub use token::{Credentials, TokenError, TokenProvider};

/// What every Dataverse client of this process shares: the HTTP client, the token cache and
/// the per-environment gates.
pub struct Dataverse {
    pub http: reqwest::Client,
    pub tokens: TokenProvider,
    pub gates: Gates,
    /// Counts and times every Dataverse and token request.
    pub metrics: Arc<Metrics>,
}

impl Dataverse {
    /// `authority` is the Entra ID authority; `max_concurrent` the requests per environment.
    pub fn new(
        http: reqwest::Client,
        authority: &str,
        max_concurrent: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tokens: TokenProvider::new(http.clone(), authority, metrics.clone()),
            gates: Gates::new(max_concurrent),
            http,
            metrics,
        })
    }

    /// A client for one connection's credentials.
    pub fn client(self: &Arc<Self>, creds: Credentials) -> DataverseClient {
        DataverseClient::new(self.clone(), creds)
    }
}

/// Reads `Retry-After` as delta-seconds (the form Dataverse and Entra ID send; DATAVERSE.md
/// "Service protection limits"). An HTTP-date or garbage gives `None`.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A short, secret-free description of a transport failure (no URL query, no headers).
pub fn describe_transport_error(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the response body was cut off"
    } else {
        "the connection failed"
    };
    let host = err
        .url()
        .and_then(|u| {
            u.host_str().map(|h| {
                format!(
                    "{h}{}",
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                )
            })
        })
        .unwrap_or_else(|| "the server".into());
    format!("{what} ({host})")
}

/// Builds the HTTP client for all outbound calls: timeouts on every request, no redirects
/// (a redirect could carry a bearer token or a client secret to another host).
pub fn http_client(request_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(10).min(request_timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("handoff-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the TLS backend initialises")
}
