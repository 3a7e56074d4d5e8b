//! Entra ID client-credentials tokens for Dataverse, through the `oauth2` crate, with a
//! per-connection cache.
//!
//! Request: `POST {authority}/{tenant}/oauth2/v2.0/token`, form
//! `grant_type=client_credentials&client_id&client_secret&scope={environment_url}/.default`
//! (Microsoft identity platform, "OAuth 2.0 client credentials flow"). A token is reused until
//! 5 minutes before it expires; one refresh per connection is in flight at a time (the
//! slot's async mutex is held across the request, so concurrent callers wait for it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::clock::Clock;

use crate::domain::EnvironmentUrl;
use crate::metrics::Metrics;

/// How long before expiry a cached token is replaced.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The app registration credentials of one connection. `Debug` never prints the secret
/// (`SecretString` redacts itself).
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Directory (tenant) ID: a GUID or a verified domain.
    pub tenant_id: String,
    /// Application (client) ID.
    pub client_id: String,
    pub client_secret: SecretString,
    pub environment_url: EnvironmentUrl,
}

impl Credentials {
    /// Identifies these exact credentials (secret included, hashed) so a changed connection
    /// never reuses a token fetched with the old one.
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            self.tenant_id.as_str(),
            self.client_id.as_str(),
            self.client_secret.expose_secret(),
            self.environment_url.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An access token and when it stops being valid. `Debug` never prints the token.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub secret: SecretString,
    pub expires_at: Instant,
}

/// Why no token was obtained.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Entra ID answered with an OAuth error (`{"error","error_description":"AADSTSnnnn: …"}`).
    #[error("Entra ID refused the token request (HTTP {status}): {error}: {description}")]
    Refused {
        status: u16,
        error: String,
        description: String,
        /// The AADSTS number at the start of `error_description`, if any.
        aadsts: Option<u32>,
    },
    /// HTTP 429 from the token endpoint.
    #[error("Entra ID throttled the token request (HTTP 429)")]
    Throttled { retry_after: Option<Duration> },
    /// Not sent: an Entra 429 paused token requests for these credentials for `wait` more.
    #[error("token requests are paused for {} ms more after an Entra ID 429", .wait.as_millis())]
    Paused { wait: Duration },
    /// Connection failure, timeout, a 5xx, or an answer that is not an OAuth response.
    #[error("the Entra ID token endpoint is unavailable: {0}")]
    Unavailable(String),
}

/// The error type of the HTTP function handed to `oauth2`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HttpError(#[from] reqwest::Error);

/// The HTTP status and `Retry-After` of the token endpoint's last answer.
type SeenResponse = (u16, Option<Duration>);

#[derive(Default)]
struct Slot {
    token: tokio::sync::Mutex<Option<AccessToken>>,
    /// Set by an Entra 429: no token request for these credentials before then.
    throttled_until: Mutex<Option<Instant>>,
}

/// How long token requests pause after an Entra 429 without `Retry-After` (docs/sources.md#entra-id:
/// "often 60").
pub const DEFAULT_TOKEN_PAUSE: Duration = Duration::from_secs(60);

/// The longest token lifetime believed, whatever `expires_in` says: 24 hours (Entra ID
/// issues access tokens for 60–90 minutes; Microsoft identity platform, "Access token
/// lifetime").
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Credentials whose tokens are cached at most; past it, slots not in use are dropped
/// (connection tests with ever-new secrets would otherwise grow the cache for ever).
pub const MAX_CACHED_CREDENTIALS: usize = 1024;

/// Fetches and caches tokens. Cheap to share (`Arc`).
pub struct TokenProvider {
    http: reqwest::Client,
    authority: String,
    metrics: Arc<Metrics>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Token lifetimes and throttling pauses are measured by this clock.
    clock: Arc<Clock>,
}

impl TokenProvider {
    /// `authority` is e.g. `https://login.microsoftonline.com` (no trailing slash needed).
    /// `http` must not follow redirects (a redirect would resend the secret elsewhere).
    pub fn new(
        http: reqwest::Client,
        authority: &str,
        metrics: Arc<Metrics>,
        clock: Arc<Clock>,
    ) -> Self {
        Self {
            http,
            metrics,
            clock,
            authority: authority.trim_end_matches('/').to_owned(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, creds: &Credentials) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() >= MAX_CACHED_CREDENTIALS {
            // Keep the slots someone is using right now; forget the rest (their tokens are
            // fetched again when needed).
            slots.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        slots.entry(creds.fingerprint()).or_default().clone()
    }

    /// A valid token for `creds`: the cached one while it has more than the refresh margin
    /// left, otherwise a new one. Concurrent callers for the same credentials share one
    /// request. After an Entra 429, token requests for these credentials pause for its
    /// `Retry-After` (60 s when absent) and calls fail at once with `Paused`.
    pub async fn token(&self, creds: &Credentials) -> Result<SecretString, TokenError> {
        let slot = self.slot(creds);
        let mut cached = slot.token.lock().await;
        if let Some(token) = cached.as_ref() {
            if self.clock.instant() + REFRESH_MARGIN < token.expires_at {
                return Ok(token.secret.clone());
            }
        }
        let throttled_until = *slot
            .throttled_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(left) =
            throttled_until.and_then(|u| u.checked_duration_since(self.clock.instant()))
        {
            return Err(TokenError::Paused { wait: left });
        }
        let fresh = match self.fetch(creds).await {
            Err(TokenError::Throttled { retry_after }) => {
                let wait = retry_after
                    .unwrap_or(DEFAULT_TOKEN_PAUSE)
                    .min(crate::outbound::MAX_RETRY_AFTER);
                let until = crate::outbound::deadline_after(self.clock.instant(), wait);
                *slot
                    .throttled_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(until);
                return Err(TokenError::Throttled {
                    retry_after: Some(wait),
                });
            }
            other => other?,
        };
        let secret = fresh.secret.clone();
        *cached = Some(fresh);
        Ok(secret)
    }

    /// Drops the cached token for `creds` if it is still `rejected` (Dataverse answered 401
    /// to it), so the next call fetches a new one. A newer token is left alone.
    pub async fn invalidate(&self, creds: &Credentials, rejected: &SecretString) {
        let slot = self.slot(creds);
        let mut cached = slot.token.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| t.secret.expose_secret() == rejected.expose_secret())
        {
            *cached = None;
        }
    }

    /// Puts a freshly fetched token in the cache, so the calls that follow reuse it.
    pub async fn prime(&self, creds: &Credentials, token: AccessToken) {
        *self.slot(creds).token.lock().await = Some(token);
    }

    /// Requests a new token, bypassing the cache (used by connection tests), and counts it
    /// in the metrics.
    pub async fn fetch(&self, creds: &Credentials) -> Result<AccessToken, TokenError> {
        let started = Instant::now();
        let result = self.request(creds).await;
        let outcome = match &result {
            Ok(_) => "issued".to_owned(),
            Err(e) => e.explain().diagnosis.code,
        };
        self.metrics
            .token_request(&outcome, started.elapsed().as_secs_f64());
        result
    }

    async fn request(&self, creds: &Credentials) -> Result<AccessToken, TokenError> {
        let token_url = TokenUrl::new(format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority, creds.tenant_id
        ))
        .map_err(|e| TokenError::Unavailable(format!("invalid token URL: {e}")))?;
        let client = BasicClient::new(ClientId::new(creds.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                creds.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(token_url);

        // oauth2 drops the HTTP status and headers of an error answer; keep what we need.
        let seen: Arc<Mutex<Option<SeenResponse>>> = Arc::default();
        let http_fn = |request: oauth2::HttpRequest| {
            let http = self.http.clone();
            let seen = seen.clone();
            async move {
                let (parts, body) = request.into_parts();
                let response = http
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let retry_after = crate::outbound::retry_after(response.headers());
                *seen.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((status.as_u16(), retry_after));
                let mut builder = oauth2::http::Response::builder().status(status.as_u16());
                for (name, value) in response.headers() {
                    builder = builder.header(name.as_str(), value.as_bytes());
                }
                let bytes = response.bytes().await?;
                Ok::<_, HttpError>(builder.body(bytes.to_vec()).expect("valid response parts"))
            }
        };

        let started = self.clock.instant();
        let result = client
            .exchange_client_credentials()
            .add_scope(Scope::new(format!("{}/.default", creds.environment_url)))
            .request_async(&http_fn)
            .await;
        let (status, retry_after) = seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or((0, None));
        match result {
            Ok(response) => {
                let lifetime = response
                    .expires_in()
                    .unwrap_or(Duration::from_secs(3599))
                    .min(MAX_TOKEN_LIFETIME);
                tracing::debug!(
                    tenant_id = %creds.tenant_id,
                    client_id = %creds.client_id,
                    expires_in_s = lifetime.as_secs(),
                    "fetched an Entra ID token"
                );
                Ok(AccessToken {
                    secret: SecretString::from(response.access_token().secret().to_owned()),
                    expires_at: crate::outbound::deadline_after(started, lifetime),
                })
            }
            Err(_) if status == 429 => Err(TokenError::Throttled { retry_after }),
            Err(_) if status >= 500 => Err(TokenError::Unavailable(format!("HTTP {status}"))),
            Err(RequestTokenError::ServerResponse(err)) => {
                let description = err.error_description().cloned().unwrap_or_default();
                Err(TokenError::Refused {
                    status,
                    error: err.error().to_string(),
                    aadsts: parse_aadsts(&description),
                    description,
                })
            }
            Err(RequestTokenError::Request(err)) => Err(TokenError::Unavailable(
                crate::outbound::describe_transport_error(&err.0),
            )),
            Err(RequestTokenError::Parse(err, _)) => Err(TokenError::Unavailable(format!(
                "HTTP {status} with a body that is not an OAuth response ({err})"
            ))),
            Err(RequestTokenError::Other(why)) => {
                Err(TokenError::Unavailable(format!("HTTP {status}: {why}")))
            }
        }
    }
}

/// `"AADSTS7000215: Invalid client secret…"` → `Some(7000215)`.
fn parse_aadsts(description: &str) -> Option<u32> {
    let rest = description.strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_number_is_read_from_the_description() {
        assert_eq!(
            parse_aadsts("AADSTS7000215: Invalid client secret"),
            Some(7000215)
        );
        assert_eq!(parse_aadsts("something else"), None);
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound_of_idle_credentials() {
        let http = reqwest::Client::new();
        let provider = TokenProvider::new(
            http,
            "https://login.example",
            Arc::default(),
            Arc::default(),
        );
        let creds = |i: usize| Credentials {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: SecretString::from(format!("secret-{i}")),
            environment_url: EnvironmentUrl::parse("https://x.crm.dynamics.com", false).unwrap(),
        };
        let in_use = provider.slot(&creds(0));
        for i in 1..=MAX_CACHED_CREDENTIALS + 10 {
            provider.slot(&creds(i));
        }
        let slots = provider.slots.lock().unwrap();
        assert!(slots.len() <= MAX_CACHED_CREDENTIALS, "{}", slots.len());
        assert!(
            slots.contains_key(&creds(0).fingerprint()),
            "a slot in use is kept"
        );
        drop(in_use);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let creds = Credentials {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: SecretString::from("super-secret-value".to_owned()),
            environment_url: EnvironmentUrl::parse("https://x.crm.dynamics.com", false).unwrap(),
        };
        assert!(!format!("{creds:?}").contains("super-secret-value"));
    }
}
