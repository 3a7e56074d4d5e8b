//! Connection test-and-save: the checks an admin runs on pasted Dynamics credentials
//! (README, "Setting up an org"), and encryption of the stored secrets.
//!
//! Checks run in order — `input`, `token`, `dataverse`, `workstream`, `privileges`,
//! `incidents` — and a failed check skips the ones after it (a warning does not). `input`
//! runs before any request, so nothing is ever sent to a host outside the Dynamics
//! allow-list.

pub mod crypto;
pub mod incidents;
pub mod opencx;
pub mod orgs;
pub mod rekey;
pub mod vault;

use std::sync::Arc;
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::catalog::{self, Diagnosis, Failure};
use crate::domain::incident::IncidentSettings;
use crate::domain::{parse_guid, EnvironmentUrl, WorkstreamId};
use crate::dynamics::choices::WORK_DISTRIBUTION_PICK;
use crate::dynamics::{Credentials, Dataverse, StreamSource, Workstream};

/// The body of `POST …/connection/test` and `PUT …/connection`. `Debug` hides the secret
/// (`SecretString` redacts itself). Unknown fields are refused (`400 invalid_shape` naming
/// the field), so a misspelt setting is never silently ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// The Value of a client secret (never its Secret ID).
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<SecretString>,
    pub environment_url: Option<String>,
    pub default_queue_id: Option<String>,
    #[serde(default)]
    pub create_contact_if_missing: bool,
    /// When the client secret expires (its Expires column in Certificates & secrets), as
    /// `YYYY-MM-DD` or an RFC 3339 time: the card warns 30 days ahead. Entra ID does not
    /// tell a client-credentials caller, so only the admin can.
    pub client_secret_expires_at: Option<String>,
    /// What sessions on channels that are not chats become (default: incidents, bound to the
    /// linked contact; see `incidents::IncidentsInput`).
    pub incidents: Option<incidents::IncidentsInput>,
}

/// Input that passed the `input` check.
#[derive(Debug, Clone)]
pub struct ValidConnection {
    pub credentials: Credentials,
    pub workstream: WorkstreamId,
    pub create_contact_if_missing: bool,
    pub incidents: IncidentSettings,
    /// When the client secret expires, Unix ms.
    pub client_secret_expires_at: Option<i64>,
}

/// How long before the client secret's expiry the token check and the card warn.
pub const SECRET_EXPIRY_WARNING_MS: i64 = 30 * 24 * 3600 * 1000;

/// `client_secret_expires_at`: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time, as Unix ms.
fn expiry(raw: &str) -> Result<i64, Diagnosis> {
    use time::format_description::well_known::Rfc3339;
    let raw = raw.trim();
    let date = time::macros::format_description!("[year]-[month]-[day]");
    let at = time::OffsetDateTime::parse(raw, &Rfc3339)
        .or_else(|_| time::Date::parse(raw, &date).map(|d| d.midnight().assume_utc()));
    match at {
        Ok(at) => Ok((at.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(_) => Err(catalog::CLIENT_SECRET_EXPIRY_INVALID.diagnose(format!(
            "client_secret_expires_at '{}' is neither YYYY-MM-DD nor an RFC 3339 time",
            raw.chars().take(40).collect::<String>()
        ))),
    }
}

/// The warning for a client secret that expires at `expires_at` (Unix ms), seen at `now`:
/// `client_secret_expiring` within [`SECRET_EXPIRY_WARNING_MS`] or past it, else `None`.
pub fn expiry_warning(expires_at: Option<i64>, now: i64) -> Option<Diagnosis> {
    let at = expires_at?;
    if at - now > SECRET_EXPIRY_WARNING_MS {
        return None;
    }
    let days = (at - now).div_euclid(24 * 3600 * 1000);
    let when = if at <= now {
        format!(
            "the date entered, {}, has passed",
            crate::clock::rfc3339(at)
        )
    } else {
        format!("it expires {} (in {days} days)", crate::clock::rfc3339(at))
    };
    Some(catalog::CLIENT_SECRET_EXPIRING.diagnose(format!("client_secret_expires_at: {when}")))
}

/// `pass`, `fail`, `warn` (passes, with advice) or `skip` (not run: an earlier check failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    Warn,
    Skip,
}

/// One check result: `{"name","status","code","message","hint","detail","found","duration_ms"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub code: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// The name of what the check found in Dynamics, for the card: the workstream's
    /// `msdyn_name` (`workstream`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub found: Option<String>,
    pub duration_ms: u64,
}

impl Check {
    fn pass(name: &str, message: String, started: Instant) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Pass,
            code: None,
            message,
            hint: None,
            detail: None,
            found: None,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    fn diagnosed(name: &str, status: CheckStatus, diag: Diagnosis, started: Instant) -> Self {
        Self {
            name: name.into(),
            status,
            code: Some(diag.code),
            message: diag.message,
            hint: Some(diag.hint),
            detail: diag.detail,
            found: None,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// A failed check `name` with the diagnosis `diag` (no time spent: a fact found without
    /// a request, e.g. by the status page).
    pub fn failed(name: &str, diag: Diagnosis) -> Self {
        Self::diagnosed(name, CheckStatus::Fail, diag, Instant::now())
    }

    /// A warning of check `name` with the diagnosis `diag`, found without a request.
    pub fn warned(name: &str, diag: Diagnosis) -> Self {
        Self::diagnosed(name, CheckStatus::Warn, diag, Instant::now())
    }

    fn skipped(name: &str, after: &str) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Skip,
            code: None,
            message: format!("Not run because the {after} check failed."),
            hint: None,
            detail: None,
            found: None,
            duration_ms: 0,
        }
    }
}

/// The names of the checks, in the order they run.
pub const CHECK_NAMES: [&str; 6] = [
    "input",
    "token",
    "dataverse",
    "workstream",
    "privileges",
    "incidents",
];

/// Whether every required check passed (warnings allowed).
pub fn all_passed(checks: &[Check]) -> bool {
    checks
        .iter()
        .all(|c| matches!(c.status, CheckStatus::Pass | CheckStatus::Warn))
}

fn is_tenant_id(raw: &str) -> bool {
    if parse_guid(raw).is_ok() {
        return true;
    }
    let labels: Vec<&str> = raw.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The `input` check: every field parsed, or the first problem as a catalog diagnosis.
pub fn validate_input(
    input: &ConnectionInput,
    allow_insecure: bool,
) -> Result<ValidConnection, Diagnosis> {
    let field = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let tenant_id = field(&input.tenant_id);
    if !is_tenant_id(&tenant_id) {
        return Err(catalog::TENANT_ID_INVALID.diagnose(format!("tenant_id '{tenant_id}'")));
    }
    let client_id = field(&input.client_id);
    let client_uuid = parse_guid(&client_id)
        .map_err(|why| catalog::CLIENT_ID_INVALID.diagnose(format!("client_id {why}")))?;
    let client_secret = input
        .client_secret
        .clone()
        .filter(|s| !s.expose_secret().trim().is_empty())
        .ok_or_else(|| catalog::CLIENT_SECRET_MISSING.diagnose(None))?;
    let environment_url = EnvironmentUrl::parse(&field(&input.environment_url), allow_insecure)
        .map_err(|why| {
            catalog::ENVIRONMENT_URL_INVALID.diagnose(format!("environment_url {why}"))
        })?;
    let workstream = WorkstreamId::parse(&field(&input.default_queue_id)).map_err(|why| {
        catalog::DEFAULT_QUEUE_ID_INVALID.diagnose(format!("default_queue_id {why}"))
    })?;
    let client_secret_expires_at = input
        .client_secret_expires_at
        .as_deref()
        .filter(|raw| !raw.trim().is_empty())
        .map(expiry)
        .transpose()?;
    let incidents = incidents::validate(input.incidents.as_ref())?;
    Ok(ValidConnection {
        credentials: Credentials {
            tenant_id,
            client_id: client_uuid.hyphenated().to_string(),
            client_secret,
            environment_url,
        },
        workstream,
        create_contact_if_missing: input.create_contact_if_missing,
        incidents,
        client_secret_expires_at,
    })
}

/// Runs the checks on `input`. Returns the checks and, when the input was valid, the parsed
/// connection (whether or not the later checks passed).
pub async fn run_checks(
    dataverse: &Arc<Dataverse>,
    input: &ConnectionInput,
    allow_insecure: bool,
) -> (Vec<Check>, Option<ValidConnection>) {
    let started = Instant::now();
    match validate_input(input, allow_insecure) {
        Ok(valid) => {
            let checks = check_valid(dataverse, &valid, started).await;
            (checks, Some(valid))
        }
        Err(diag) => (failed_input(diag, started), None),
    }
}

/// The checks when `input` fails: that failure, and every later check skipped.
pub fn failed_input(diag: Diagnosis, started: Instant) -> Vec<Check> {
    let mut checks = vec![Check::diagnosed("input", CheckStatus::Fail, diag, started)];
    checks.extend(CHECK_NAMES[1..].iter().map(|n| Check::skipped(n, "input")));
    checks
}

/// Runs the checks on a connection whose input is valid (a new one, or a saved one being
/// checked again): `input` passes, then `token`, `dataverse`, `workstream`, `privileges`
/// and `incidents`, each skipped after a failure.
pub async fn check_valid(
    dataverse: &Arc<Dataverse>,
    valid: &ValidConnection,
    started: Instant,
) -> Vec<Check> {
    let mut checks = vec![Check::pass(
        "input",
        format!(
            "The settings are well formed; environment {}.",
            valid.credentials.environment_url
        ),
        started,
    )];
    let checks_after = |checks: &mut Vec<Check>, failed: &str| {
        let from = CHECK_NAMES.iter().position(|n| *n == failed).unwrap_or(0) + 1;
        checks.extend(
            CHECK_NAMES[from..]
                .iter()
                .map(|n| Check::skipped(n, failed)),
        );
    };

    // token: a fresh request (never a cached token), then primed for the checks after it.
    let started = Instant::now();
    let tokens = &dataverse.tokens;
    match tokens.fetch(&valid.credentials).await {
        Ok(token) => {
            tokens.prime(&valid.credentials, token).await;
            let now = crate::clock::now_ms();
            checks.push(match expiry_warning(valid.client_secret_expires_at, now) {
                Some(diag) => Check::diagnosed("token", CheckStatus::Warn, diag, started),
                None => Check::pass(
                    "token",
                    "Entra ID issued an access token for the environment.".into(),
                    started,
                ),
            });
        }
        Err(err) => {
            checks.push(Check::diagnosed(
                "token",
                CheckStatus::Fail,
                err.explain().diagnosis,
                started,
            ));
            checks_after(&mut checks, "token");
            return checks;
        }
    }

    let client = dataverse.client(valid.credentials.clone());
    let started = Instant::now();
    let me = match client.who_am_i().await {
        Ok(me) => {
            checks.push(Check::pass(
                "dataverse",
                format!(
                    "Dataverse accepted the application user (user id {}).",
                    me.user_id
                ),
                started,
            ));
            me
        }
        Err(err) => {
            checks.push(Check::diagnosed(
                "dataverse",
                CheckStatus::Fail,
                err.explain().diagnosis,
                started,
            ));
            checks_after(&mut checks, "dataverse");
            return checks;
        }
    };

    let started = Instant::now();
    let id = valid.workstream.uuid();
    let check = match client.workstream(id).await {
        Ok(Some(ws)) => judge_workstream(&ws, started),
        Ok(None) => {
            let entry = match client.queue_exists(id).await {
                Ok(true) => catalog::WORKSTREAM_IS_QUEUE,
                _ => catalog::WORKSTREAM_NOT_FOUND,
            };
            Check::diagnosed(
                "workstream",
                CheckStatus::Fail,
                entry.diagnose(format!("default_queue_id {id}")),
                started,
            )
        }
        Err(err) => Check::diagnosed(
            "workstream",
            CheckStatus::Fail,
            err.explain().diagnosis,
            started,
        ),
    };
    // Each of the last checks runs only if the one before did not fail.
    let failed = |checks: &mut Vec<Check>, check: Check| {
        let failed = check.status == CheckStatus::Fail;
        let name = check.name.clone();
        checks.push(check);
        if failed {
            checks_after(checks, &name);
        }
        failed
    };
    if failed(&mut checks, check) {
        return checks;
    }
    let privileges = incidents::check_privileges(&client, valid, me.user_id).await;
    if failed(&mut checks, privileges) {
        return checks;
    }
    checks.push(incidents::check_incidents(&client, &valid.incidents).await);
    checks
}

fn judge_workstream(ws: &Workstream, started: Instant) -> Check {
    let name = ws
        .msdyn_name
        .clone()
        .unwrap_or_else(|| ws.msdyn_liveworkstreamid.to_string());
    let source = ws.msdyn_streamsource.unwrap_or_default();
    let verdict: Option<(CheckStatus, Failure)> = match StreamSource::from_value(source) {
        _ if ws.statecode == Some(1) => Some((CheckStatus::Fail, catalog::WORKSTREAM_INACTIVE)),
        Some(StreamSource::EntityRecords) => {
            Some((CheckStatus::Fail, catalog::WORKSTREAM_RECORD_ROUTING))
        }
        Some(StreamSource::Voice | StreamSource::VoiceCall) => {
            Some((CheckStatus::Fail, catalog::WORKSTREAM_VOICE))
        }
        Some(s) if s.is_messaging() => (ws.msdyn_workdistributionmode
            == Some(WORK_DISTRIBUTION_PICK))
        .then_some((CheckStatus::Warn, catalog::WORKSTREAM_PICK_MODE)),
        _ => Some((CheckStatus::Warn, catalog::WORKSTREAM_OTHER_CHANNEL)),
    };
    let check = match verdict {
        Some((status, entry)) => Check::diagnosed(
            "workstream",
            status,
            entry.diagnose(format!("workstream '{name}' (msdyn_streamsource {source})")),
            started,
        ),
        None => Check::pass(
            "workstream",
            format!("Workstream '{name}' is an active messaging workstream."),
            started,
        ),
    };
    Check {
        found: ws.msdyn_name.clone(),
        ..check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_guids_or_domains() {
        assert!(is_tenant_id("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(is_tenant_id("contoso.onmicrosoft.com"));
        assert!(!is_tenant_id("common"));
        assert!(!is_tenant_id("bad domain.com"));
        assert!(!is_tenant_id("../x"));
    }
}
