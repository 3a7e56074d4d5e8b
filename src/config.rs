//! The service configuration, from flags and `HANDOFF_*` environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::connection::crypto::EncryptionKey;
use crate::handoff::retry::RetryPolicy;
use crate::handoff::worker::WorkerSettings;
use crate::http::server::HttpLimits;

/// Everything `App::build` needs.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://…`.
    pub database_url: String,
    /// Bearer token of the admin API and status page.
    pub admin_token: SecretString,
    /// A token that only reads: the status page and `GET /v1/status` (`HANDOFF_VIEWER_TOKEN`).
    pub viewer_token: Option<SecretString>,
    pub encryption_key: EncryptionKey,
    /// Keys that only open stored secrets (a key rotation in progress).
    pub previous_encryption_keys: Vec<EncryptionKey>,
    /// Entra ID authority, e.g. `https://login.microsoftonline.com`.
    pub entra_authority: String,
    /// Timeout of each outbound request.
    pub request_timeout: Duration,
    /// Start even when stored secrets do not open with the encryption keys
    /// (`HANDOFF_ALLOW_UNREADABLE_SECRETS`): their orgs' webhooks are then answered `503
    /// connection_secret_unreadable`. Off, such a start is refused (`App::build`).
    pub allow_unreadable_secrets: bool,
    pub settings: Settings,
}

/// Worker, HTTP and safety settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Admits `http://` loopback environment, authority and callback URLs (development).
    pub allow_insecure_dynamics: bool,
    pub retry: RetryPolicy,
    /// How long a claimed job is owned before another worker may take it.
    pub lease: Duration,
    /// Jobs run at once by this process's worker.
    pub concurrency: usize,
    /// Jobs of one org run at once by this process's worker (default half of
    /// `concurrency`, at least 1), so an org whose Dataverse hangs or who floods the queue
    /// leaves slots for the others.
    pub org_concurrency: usize,
    /// Concurrent Dataverse requests per environment from this process (default 8).
    pub dataverse_concurrency: usize,
    /// Dataverse requests per window per environment from this process (default
    /// [`Pacing::DATAVERSE`](crate::dynamics::Pacing::DATAVERSE), 6,000 per 300 s).
    pub dataverse_pacing: crate::dynamics::Pacing,
    /// OpenCX API requests a minute per API key from this process, sustained (default
    /// [`opencx::PACE_PER_MINUTE`](crate::opencx::PACE_PER_MINUTE)).
    pub opencx_requests_per_minute: u32,
    /// OpenCX API requests one API key may send at once (default
    /// [`opencx::PACE_BURST`](crate::opencx::PACE_BURST)); with the rate, no minute holds
    /// more than their sum, kept at OpenCX's 100 by default.
    pub opencx_burst: u32,
    /// On shutdown, how long jobs in flight may take before they are given back.
    pub shutdown_grace: Duration,
    /// Limits on inbound HTTP connections and request reads.
    pub limits: HttpLimits,
    /// How long a settled handoff keeps the visitor's session (summary, contact details,
    /// transcript) before it is redacted; ids, outcome and timeline stay (default 30 days).
    pub retention: Duration,
    /// This process's name among the replicas (`HANDOFF_INSTANCE_ID`; `serve` defaults it
    /// to `{hostname}:{port}`): its leases carry it, so the same instance restarted takes
    /// back the work it held at once. Must be unique among live processes; `None` takes
    /// nothing back (held work waits for its lease to end).
    pub instance: Option<String>,
}

impl Settings {
    /// The default of `concurrency` (`HANDOFF_WORKER_CONCURRENCY`).
    pub const DEFAULT_CONCURRENCY: u16 = 32;

    /// The default per-org share of `concurrency`: half, at least 1.
    pub fn default_org_concurrency(concurrency: usize) -> usize {
        (concurrency / 2).max(1)
    }

    /// What the worker runs with.
    pub fn worker(&self) -> WorkerSettings {
        WorkerSettings {
            retry: self.retry,
            lease: self.lease,
            concurrency: self.concurrency,
            org_concurrency: self.org_concurrency,
            shutdown_grace: self.shutdown_grace,
            retention: self.retention,
            allow_insecure: self.allow_insecure_dynamics,
        }
    }
}

/// Shortest admin token accepted, in characters.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Why `serve` refuses to start: each message says what to set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("HANDOFF_ENCRYPTION_KEY (or HANDOFF_ENCRYPTION_KEY_FILE) is not set. It encrypts the stored client and webhook secrets. Create one with `handoff-bridge keygen` and set HANDOFF_ENCRYPTION_KEY to its output.")]
    MissingEncryptionKey,
    #[error("the encryption key is not valid: it must be 32 bytes as base64. Create one with `handoff-bridge keygen`.")]
    BadEncryptionKey,
    #[error(
        "HANDOFF_PREVIOUS_ENCRYPTION_KEYS must be base64 keys of 32 bytes, separated by commas."
    )]
    BadPreviousKey,
    #[error("HANDOFF_ENCRYPTION_KEY_FILE {0} cannot be read: {1}")]
    KeyFile(String, String),
    #[error("HANDOFF_ADMIN_TOKEN is not set. It protects the admin API and the status page. Set it to a long random value (at least 16 characters), e.g. the output of `handoff-bridge keygen`.")]
    MissingAdminToken,
    #[error("HANDOFF_ADMIN_TOKEN is shorter than 16 characters; use a long random value, e.g. the output of `handoff-bridge keygen`.")]
    ShortAdminToken,
    #[error("HANDOFF_VIEWER_TOKEN must be at least 16 characters and differ from HANDOFF_ADMIN_TOKEN (it only reads the status page and GET /v1/status).")]
    BadViewerToken,
    #[error("HANDOFF_ENTRA_AUTHORITY must be an https:// URL (http:// is allowed only for loopback with HANDOFF_ALLOW_INSECURE_DYNAMICS=true): {0}")]
    InsecureAuthority(String),
}

/// Reads the encryption key from its value or its file.
pub fn encryption_key(
    value: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<EncryptionKey, ConfigError> {
    let text = match (value, file) {
        (Some(v), _) if !v.trim().is_empty() => v.to_owned(),
        (_, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| ConfigError::KeyFile(path.display().to_string(), e.to_string()))?,
        _ => return Err(ConfigError::MissingEncryptionKey),
    };
    EncryptionKey::from_base64(&text).map_err(|_| ConfigError::BadEncryptionKey)
}

/// Reads `HANDOFF_PREVIOUS_ENCRYPTION_KEYS`: comma-separated base64 keys, each 32 bytes.
pub fn previous_encryption_keys(value: Option<&str>) -> Result<Vec<EncryptionKey>, ConfigError> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| EncryptionKey::from_base64(k).map_err(|_| ConfigError::BadPreviousKey))
        .collect()
}

/// Checks the admin token is present and long enough.
pub fn admin_token(value: Option<&str>) -> Result<SecretString, ConfigError> {
    match value.map(str::trim) {
        None | Some("") => Err(ConfigError::MissingAdminToken),
        Some(t) if t.chars().count() < MIN_ADMIN_TOKEN_LEN => Err(ConfigError::ShortAdminToken),
        Some(t) => Ok(SecretString::from(t.to_owned())),
    }
}

/// Reads the optional viewer token: at least 16 characters, not the admin token.
pub fn viewer_token(
    value: Option<&str>,
    admin: &SecretString,
) -> Result<Option<SecretString>, ConfigError> {
    use secrecy::ExposeSecret;
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() < MIN_ADMIN_TOKEN_LEN || t == admin.expose_secret() => {
            Err(ConfigError::BadViewerToken)
        }
        Some(t) => Ok(Some(SecretString::from(t.to_owned()))),
    }
}

/// Checks the Entra authority: https, or http on loopback when insecure mode is on.
pub fn entra_authority(raw: &str, allow_insecure: bool) -> Result<String, ConfigError> {
    let url =
        reqwest::Url::parse(raw).map_err(|_| ConfigError::InsecureAuthority(raw.to_owned()))?;
    let ok = url.scheme() == "https"
        || (allow_insecure && url.scheme() == "http" && crate::domain::is_loopback_host(&url));
    if !ok {
        return Err(ConfigError::InsecureAuthority(raw.to_owned()));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}
