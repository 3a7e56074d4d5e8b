//! An org's OpenCX connection: the API key the bridge fetches thin handoff events'
//! sessions with (and writes `dynamics365_chat_id` back with), its base URL, and the org's
//! OpenCX settings. Test-and-save runs two checks, `input` then `api_key`, and saves only
//! when both pass.

use std::time::Instant;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Check, CheckStatus};
use crate::domain::catalog::{self, Diagnosis};
use crate::opencx::{OpenCx, OpenCxError, DEFAULT_BASE_URL};
use crate::webhook::address::{check_target, AddressPolicy, TargetRefused};
use crate::webhook::FieldError;

/// The longest write-back message, in characters.
pub const MAX_WRITE_BACK_MESSAGE: usize = 1_000;

/// The session id the `api_key` check asks for: OpenCX has none such, so an accepted key
/// gets `404` and a refused one `401`/`403`.
pub const PROBE_SESSION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// `PUT /v1/orgs/{org_id}/opencx` body. Unknown fields are refused (`400 invalid_shape`
/// naming the field). `Debug` hides the key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCxInput {
    /// An OpenCX API key of the organization (OpenCX dashboard: Settings > API keys).
    #[schema(value_type = Option<String>, format = Password)]
    pub api_key: Option<SecretString>,
    /// The API's root URL; default `https://api.open.cx`. `http://` only for a loopback
    /// host with `--allow-insecure-dev` (or `HANDOFF_ALLOW_INSECURE_DEV`).
    pub base_url: Option<String>,
    /// Whether an OpenCX contact email counts as verified when the fetched session carries
    /// no verified flag (default `false`: it does not, so it links no contact).
    #[serde(default)]
    pub contact_emails_verified: bool,
    /// Opt-in write-back: when the live work item exists, this visitor-facing message is
    /// sent to the session once (`POST /chat/sessions/{id}/send`), carrying `custom_data
    /// {dynamics365_chat_id}`. Absent or null: nothing is sent. 1 to 1,000 characters.
    pub write_back_message: Option<String>,
}

/// Input that passed the `input` check.
#[derive(Debug, Clone)]
pub struct ValidOpenCx {
    pub base_url: Url,
    pub api_key: SecretString,
    pub contact_emails_verified: bool,
}

/// The base URL: `raw` (default [`DEFAULT_BASE_URL`]) as an `https://` URL (or `http://`
/// on a loopback host when `allow_insecure`) with a host that is not an IP literal of a
/// private, loopback or reserved address (the callbacks' policy, `webhook::address`; the
/// client refuses such addresses again when it connects), no credentials, query or
/// fragment; a trailing `/` is dropped.
pub fn base_url(raw: Option<&str>, allow_insecure: bool) -> Result<Url, String> {
    let raw = raw.map(str::trim).filter(|r| !r.is_empty());
    let raw = raw.unwrap_or(DEFAULT_BASE_URL);
    let url = Url::parse(raw).map_err(|e| format!("base_url '{raw}' is not a URL ({e})"))?;
    let policy = AddressPolicy {
        allow_loopback: allow_insecure,
    };
    match check_target(&url, policy) {
        Ok(()) => {}
        Err(TargetRefused::NotHttps) => {
            return Err(format!("base_url '{raw}' must start with https://"))
        }
        Err(why) => return Err(format!("base_url '{raw}' {why}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "base_url '{raw}' must name a host and carry no credentials"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("base_url '{raw}' must have no query or fragment"));
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Checks the write-back message; a problem is a field error under `/write_back_message`.
pub fn write_back_message(raw: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(text) = raw.map(str::trim) else {
        return Ok(None);
    };
    let length = text.chars().count();
    if length == 0 || length > MAX_WRITE_BACK_MESSAGE {
        return Err(FieldError::new(
            "/write_back_message",
            format!("must be 1 to {MAX_WRITE_BACK_MESSAGE} characters, or null for no write-back"),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError::new(
            "/write_back_message",
            "must not contain control characters other than line breaks",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// The `input` check: the key given and the base URL well formed, or the first problem.
pub fn validate_input(input: &OpenCxInput, allow_insecure: bool) -> Result<ValidOpenCx, Diagnosis> {
    let api_key = input
        .api_key
        .clone()
        .filter(|k| !k.expose_secret().trim().is_empty())
        .ok_or_else(|| catalog::OPENCX_API_KEY_MISSING.diagnose(None))?;
    let base_url = base_url(input.base_url.as_deref(), allow_insecure)
        .map_err(|why| catalog::OPENCX_BASE_URL_INVALID.diagnose(why))?;
    Ok(ValidOpenCx {
        base_url,
        api_key: SecretString::from(api_key.expose_secret().trim().to_owned()),
        contact_emails_verified: input.contact_emails_verified,
    })
}

/// Runs the `api_key` check on a saved connection's settings (`input` passes: they were
/// valid when saved, and `base_url` was just parsed again).
pub async fn check_saved(
    opencx: &OpenCx,
    base_url: Url,
    api_key: &SecretString,
    org_id: &str,
) -> Vec<Check> {
    let started = Instant::now();
    let input = Check::pass(
        "input",
        format!("The saved settings are well formed; OpenCX API at {base_url}."),
        started,
    );
    vec![input, probe(opencx, base_url, api_key, org_id).await]
}

/// The checks when the `input` check fails with `diag`: that failure, `api_key` skipped.
pub fn failed_input(diag: Diagnosis, started: Instant) -> Vec<Check> {
    vec![
        Check::diagnosed("input", CheckStatus::Fail, diag, started),
        Check::skipped("api_key", "input"),
    ]
}

/// The `api_key` check: one `GET /chat/sessions/{PROBE_SESSION_ID}`.
async fn probe(opencx: &OpenCx, base_url: Url, api_key: &SecretString, org_id: &str) -> Check {
    let started = Instant::now();
    let client = opencx.client(base_url, api_key);
    match client.session(PROBE_SESSION_ID).await {
        Ok(_) => Check::pass("api_key", "OpenCX accepted the API key.".into(), started),
        Err(OpenCxError::Status {
            status: status @ (400 | 404 | 422),
            ..
        }) => Check::pass(
            "api_key",
            format!(
                "OpenCX accepted the API key (it answered HTTP {status} for a session that does not exist, as expected)."
            ),
            started,
        ),
        Err(err) => Check::diagnosed(
            "api_key",
            CheckStatus::Fail,
            err.diagnose().for_org(org_id),
            started,
        ),
    }
}

/// Runs the checks on `input` for `org_id` (hints name its routes): `input`, then
/// `api_key` (one `GET /chat/sessions/{PROBE_SESSION_ID}`: `404` means OpenCX took the
/// key). Returns the checks and, when the input was valid, the parsed settings.
pub async fn run_checks(
    opencx: &OpenCx,
    input: &OpenCxInput,
    org_id: &str,
    allow_insecure: bool,
) -> (Vec<Check>, Option<ValidOpenCx>) {
    let started = Instant::now();
    let valid = match validate_input(input, allow_insecure) {
        Ok(valid) => valid,
        Err(diag) => return (failed_input(diag.for_org(org_id), started), None),
    };
    let mut checks = vec![Check::pass(
        "input",
        format!(
            "The settings are well formed; OpenCX API at {}.",
            valid.base_url
        ),
        started,
    )];
    checks.push(probe(opencx, valid.base_url.clone(), &valid.api_key, org_id).await);
    (checks, Some(valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_defaults_to_opencx_and_takes_https_only() {
        assert_eq!(
            base_url(None, false).unwrap().as_str(),
            "https://api.open.cx/"
        );
        assert_eq!(
            base_url(Some("https://eu.api.open.cx/v1/"), false)
                .unwrap()
                .as_str(),
            "https://eu.api.open.cx/v1"
        );
        assert!(base_url(Some("http://127.0.0.1:9"), false).is_err());
        assert!(base_url(Some("http://127.0.0.1:9"), true).is_ok());
        assert!(base_url(Some("http://example.com"), true).is_err());
        assert!(base_url(Some("https://u:p@api.open.cx"), false).is_err());
        assert!(base_url(Some("https://api.open.cx/?a=1"), false).is_err());
        assert!(base_url(Some("api.open.cx"), false).is_err());
        let private = base_url(Some("https://10.0.0.7"), false).unwrap_err();
        assert!(private.contains("private"), "{private}");
        assert!(base_url(Some("https://169.254.169.254/latest"), true).is_err());
    }

    #[test]
    fn the_write_back_message_is_optional_bounded_and_printable() {
        assert_eq!(write_back_message(None).unwrap(), None);
        assert_eq!(
            write_back_message(Some(" Someone joins soon. "))
                .unwrap()
                .as_deref(),
            Some("Someone joins soon.")
        );
        for bad in ["  ", "a\u{7}b"] {
            let err = write_back_message(Some(bad)).unwrap_err();
            assert_eq!(err.pointer, "/write_back_message");
        }
        assert!(write_back_message(Some(&"x".repeat(1_001))).is_err());
        assert!(write_back_message(Some("line one\nline two")).is_ok());
    }
}
