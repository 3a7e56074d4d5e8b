//! The rules of orgs and their saved connections, whatever the front end: create or update
//! an org (name, callback URL), rotate and revoke its webhook secret, save a connection only
//! after its checks pass, check a saved one again, and read its credentials back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::opencx::OpenCxInput;
use super::vault::{SealTarget, Vault};
use super::{check_valid, failed_input, run_checks, Check, ConnectionInput, ValidConnection};
use crate::domain::catalog::{self, Diagnosis};
use crate::domain::{EnvironmentUrl, OrgId, WorkstreamId};
use crate::dynamics::{Credentials, Dataverse};
use crate::opencx::OpenCx;
use crate::store::{ConnectionRow, OpenCxConnectionRow, OrgRow, Store, StoreError};
use crate::webhook::address::{AddressPolicy, CallbackUrl};
use crate::webhook::{FieldError, WebhookSecret};

/// How long a rotated-out webhook secret is still accepted: 24 hours (README, "Setting up an org").
pub const SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

/// `PUT /v1/orgs/{org_id}` body. Unknown fields are refused (`400 invalid_shape` naming
/// the field), so a misspelt setting is never silently ignored. `Debug` hides the secret.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgInput {
    pub name: Option<String>,
    pub callback_url: Option<String>,
    /// The signing secret the widget backend signs with, pasted from it (OpenCX: Settings →
    /// Integrations → Webhooks): `whsec_<base64>` (Standard Webhooks) or a plain string of
    /// 16 to 256 bytes used as the HMAC key. Absent: a new org gets a generated one, an
    /// existing org keeps its own. On an existing org it becomes the current secret and the
    /// old one is still accepted for 24 hours, as after a rotation.
    #[schema(value_type = Option<String>, format = Password)]
    pub webhook_secret: Option<SecretString>,
}

/// `POST /v1/orgs/{org_id}/webhook-secret` body (optional): the secret to rotate to, pasted
/// from the widget backend; without it a new one is generated.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    /// As [`OrgInput::webhook_secret`].
    #[schema(value_type = Option<String>, format = Password)]
    pub webhook_secret: Option<SecretString>,
}

/// Until when (Unix ms) a secret replaced at `now` is still accepted: [`SECRET_GRACE`] later.
fn previous_valid_until(now: i64) -> i64 {
    now.saturating_add(SECRET_GRACE.as_millis() as i64)
}

/// What saving an org did.
#[derive(Debug)]
pub struct SavedOrg {
    pub org: OrgRow,
    /// Whether the org is new.
    pub created: bool,
    /// The webhook secret the bridge generated for a new org, to hand to the admin this
    /// once; `None` on an update or when the admin gave one.
    pub generated_secret: Option<WebhookSecret>,
}

/// The secret in `input`, imported (an error goes to `errors` under `/webhook_secret`);
/// `None` when absent or refused.
fn imported_secret(
    input: Option<&SecretString>,
    errors: &mut Vec<FieldError>,
) -> Option<WebhookSecret> {
    let text = input?;
    match WebhookSecret::import(text.expose_secret()) {
        Ok(secret) => Some(secret),
        Err(why) => {
            errors.push(FieldError::new("/webhook_secret", why));
            None
        }
    }
}

/// Why an org or connection operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `active` (every check passed when last run) or `failing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    Failing,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Failing => "failing",
        }
    }

    /// The status a set of checks earns.
    pub fn of(checks: &[Check]) -> Self {
        if super::all_passed(checks) {
            Self::Active
        } else {
            Self::Failing
        }
    }

    /// The status as stored; anything but `active` reads as failing.
    pub fn stored(raw: &str) -> Self {
        if raw == "active" {
            Self::Active
        } else {
            Self::Failing
        }
    }
}

/// What a test-and-save did.
#[derive(Debug)]
pub enum SaveOutcome {
    /// Every check passed; the connection is saved as active.
    Saved(Vec<Check>),
    /// A check failed; nothing was saved and the previous connection stays.
    Refused(Vec<Check>),
}

/// Org and connection rules over the store, the vault and Dataverse.
pub struct OrgRules<'a> {
    pub store: &'a Store,
    pub vault: &'a Vault,
    pub dataverse: &'a Arc<Dataverse>,
    pub opencx: &'a OpenCx,
    /// Development mode: loopback `http://` environments and callbacks are admitted.
    pub allow_insecure: bool,
}

impl OrgRules<'_> {
    fn callback_policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_loopback: self.allow_insecure,
        }
    }

    /// Creates the org with a new webhook secret, or updates its name and callback URL.
    /// Every invalid field is reported (`/name`, `/callback_url`).
    pub async fn save_org(
        &self,
        id: &OrgId,
        input: &OrgInput,
        now: i64,
    ) -> Result<SavedOrg, OrgError> {
        let mut errors = Vec::new();
        let name = input.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push(FieldError::new("/name", "is required, 1 to 200 characters"));
        } else if name.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "/name",
                "must not contain control characters",
            ));
        }
        let callback_url = match input.callback_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => match CallbackUrl::check(raw, self.callback_policy()).await {
                Ok(url) => Some(url),
                Err(why) => {
                    errors.push(FieldError::new("/callback_url", why));
                    None
                }
            },
        };
        let imported = imported_secret(input.webhook_secret.as_ref(), &mut errors);
        if !errors.is_empty() {
            return Err(OrgError::Invalid(errors));
        }
        let callback_url = callback_url.map(|u| u.as_str().to_owned());
        let secret = imported.clone().unwrap_or_else(WebhookSecret::generate);
        let created = self
            .store
            .create_org(&OrgRow {
                org_id: id.to_string(),
                name: name.to_owned(),
                callback_url: callback_url.clone(),
                webhook_secret_enc: self.vault.seal_webhook_secret(id.as_str(), &secret),
                previous_webhook_secret_enc: None,
                previous_secret_expires_at: None,
                created_at: now,
                updated_at: now,
            })
            .await?;
        if !created {
            // A pasted secret that is already current changes nothing (a PUT repeated by
            // automation must not push the previous secret out of its grace period).
            let current = match (&imported, self.store.org(id.as_str()).await?) {
                (Some(_), Some(org)) => self.vault.webhook_secret(&org).ok(),
                _ => None,
            };
            let rotation = imported
                .as_ref()
                .filter(|new| {
                    current
                        .as_ref()
                        .is_none_or(|cur| cur.expose() != new.expose())
                })
                .map(|new| {
                    (
                        self.vault.seal_webhook_secret(id.as_str(), new),
                        previous_valid_until(now),
                    )
                });
            self.store
                .update_org(
                    id.as_str(),
                    name,
                    callback_url.as_deref(),
                    rotation
                        .as_ref()
                        .map(|(sealed, until)| (sealed.as_str(), *until)),
                    now,
                )
                .await?;
        }
        let org = self
            .store
            .org(id.as_str())
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("org '{id}' vanished after saving")))?;
        Ok(SavedOrg {
            org,
            created,
            generated_secret: (created && imported.is_none()).then_some(secret),
        })
    }

    /// Makes a new webhook secret current, the one in `input` or else a generated one; the
    /// old one stays valid for [`SECRET_GRACE`]. Returns the secret when it was generated
    /// (to hand to the admin this once) and when the old one stops verifying (Unix ms).
    pub async fn rotate_webhook_secret(
        &self,
        org: &OrgRow,
        input: &RotateInput,
        now: i64,
    ) -> Result<(Option<WebhookSecret>, i64), OrgError> {
        let mut errors = Vec::new();
        let imported = imported_secret(input.webhook_secret.as_ref(), &mut errors);
        if !errors.is_empty() {
            return Err(OrgError::Invalid(errors));
        }
        let (secret, generated) = match imported {
            Some(secret) => (secret, None),
            None => {
                let secret = WebhookSecret::generate();
                (secret.clone(), Some(secret))
            }
        };
        let until = self.rotate_to(&org.org_id, &secret, now).await?;
        Ok((generated, until))
    }

    /// Makes `secret` current for `org_id`, the old one valid for [`SECRET_GRACE`] more.
    /// Returns when the old one stops verifying (Unix ms).
    async fn rotate_to(
        &self,
        org_id: &str,
        secret: &WebhookSecret,
        now: i64,
    ) -> Result<i64, StoreError> {
        let until = previous_valid_until(now);
        let sealed = self.vault.seal_webhook_secret(org_id, secret);
        self.store
            .rotate_webhook_secret(org_id, &sealed, until, now)
            .await?;
        Ok(until)
    }

    /// Runs the checks on `input` and saves the connection only if every one passes.
    pub async fn save_connection(
        &self,
        org: &OrgRow,
        input: &ConnectionInput,
        now: i64,
    ) -> Result<SaveOutcome, StoreError> {
        let (checks, valid) = run_checks(self.dataverse, input, self.allow_insecure).await;
        let valid = match valid {
            Some(valid) if super::all_passed(&checks) => valid,
            _ => return Ok(SaveOutcome::Refused(checks)),
        };
        let creds = &valid.credentials;
        self.store
            .save_connection(&ConnectionRow {
                org_id: org.org_id.clone(),
                tenant_id: creds.tenant_id.clone(),
                client_id: creds.client_id.clone(),
                client_secret_enc: self
                    .vault
                    .seal(SealTarget::ClientSecret(&org.org_id), &creds.client_secret),
                environment_url: creds.environment_url.to_string(),
                workstream_id: valid.workstream.to_string(),
                create_contact_if_missing: valid.create_contact_if_missing,
                last_success_at: None,
                last_failure_at: None,
                last_failure: None,
                failing_since: None,
                client_secret_expires_at: valid.client_secret_expires_at,
                incidents: Some(
                    serde_json::to_string(&valid.incidents).expect("incident settings serialize"),
                ),
                status: ConnectionStatus::Active.as_str().to_owned(),
                checks: serde_json::to_string(&checks).expect("checks serialize"),
                last_checked_at: now,
                created_at: now,
                updated_at: now,
            })
            .await?;
        // Handoffs parked without a connection, or backing off after a failure the new
        // settings may have fixed, are due now (the caller wakes the worker).
        self.store
            .wake_queued(&org.org_id, None, "the connection was saved", now)
            .await?;
        Ok(SaveOutcome::Saved(checks))
    }

    /// Runs the checks again on a saved connection and records the verdict on it; when they
    /// pass, the org's queued handoffs are due now (the caller wakes the worker).
    pub async fn check_again(
        &self,
        conn: &ConnectionRow,
        now: i64,
    ) -> Result<(ConnectionStatus, Vec<Check>), StoreError> {
        let started = Instant::now();
        let saved = credentials(self.vault, conn, self.allow_insecure)
            .and_then(|c| Ok((c, super::incidents::stored(conn.incidents.as_deref())?)));
        let checks = match saved {
            Ok(((credentials, workstream), incidents)) => {
                let valid = ValidConnection {
                    credentials,
                    workstream,
                    create_contact_if_missing: conn.create_contact_if_missing,
                    incidents,
                    client_secret_expires_at: conn.client_secret_expires_at,
                };
                check_valid(self.dataverse, &valid, started).await
            }
            Err(diag) => failed_input(diag, started),
        };
        let status = ConnectionStatus::of(&checks);
        self.store
            .record_connection_check(
                &conn.org_id,
                status.as_str(),
                &serde_json::to_string(&checks).expect("checks serialize"),
                now,
            )
            .await?;
        if status == ConnectionStatus::Active {
            self.store
                .wake_queued(&conn.org_id, None, "the connection passed its checks", now)
                .await?;
        }
        Ok((status, checks))
    }
}

impl OrgRules<'_> {
    /// Runs the OpenCX checks on `input` and saves the org's OpenCX connection only if both
    /// pass; then the org's handoffs waiting for it are due now (the caller wakes the
    /// worker). A broken `write_back_message` is refused before any request.
    pub async fn save_opencx(
        &self,
        org: &OrgRow,
        input: &OpenCxInput,
        now: i64,
    ) -> Result<SaveOutcome, OrgError> {
        let message = super::opencx::write_back_message(input.write_back_message.as_deref())
            .map_err(|e| OrgError::Invalid(vec![e]))?;
        let (checks, valid) =
            super::opencx::run_checks(self.opencx, input, &org.org_id, self.allow_insecure).await;
        let valid = match valid {
            Some(valid) if super::all_passed(&checks) => valid,
            _ => return Ok(SaveOutcome::Refused(checks)),
        };
        self.store
            .save_opencx_connection(&OpenCxConnectionRow {
                org_id: org.org_id.clone(),
                base_url: valid.base_url.to_string(),
                api_key_enc: self
                    .vault
                    .seal(SealTarget::OpenCxApiKey(&org.org_id), &valid.api_key),
                contact_emails_verified: valid.contact_emails_verified,
                write_back_message: message,
                status: ConnectionStatus::Active.as_str().to_owned(),
                checks: serde_json::to_string(&checks).expect("checks serialize"),
                last_checked_at: now,
                created_at: now,
                updated_at: now,
            })
            .await?;
        self.store
            .wake_queued(&org.org_id, None, "the OpenCX connection was saved", now)
            .await?;
        Ok(SaveOutcome::Saved(checks))
    }
}

impl OrgRules<'_> {
    /// Runs the OpenCX checks again on a saved connection (e.g. after the key was revoked
    /// and replaced in OpenCX) and records the verdict on it; when they pass, the org's
    /// queued handoffs are due now (the caller wakes the worker).
    pub async fn check_opencx_again(
        &self,
        conn: &OpenCxConnectionRow,
        now: i64,
    ) -> Result<(ConnectionStatus, Vec<Check>), StoreError> {
        let checks = match opencx_access(self.vault, conn, self.allow_insecure) {
            Ok((base, key)) => {
                super::opencx::check_saved(self.opencx, base, &key, &conn.org_id).await
            }
            Err(diag) => super::opencx::failed_input(diag, Instant::now()),
        };
        let status = ConnectionStatus::of(&checks);
        self.store
            .record_opencx_check(
                &conn.org_id,
                status.as_str(),
                &serde_json::to_string(&checks).expect("checks serialize"),
                now,
            )
            .await?;
        if status == ConnectionStatus::Active {
            let reason = "the OpenCX connection passed its checks";
            self.store
                .wake_queued(&conn.org_id, None, reason, now)
                .await?;
        }
        Ok((status, checks))
    }
}

/// Reads a saved OpenCX connection back into its base URL and API key (opened).
pub fn opencx_access(
    vault: &Vault,
    conn: &OpenCxConnectionRow,
    allow_insecure: bool,
) -> Result<(reqwest::Url, SecretString), Diagnosis> {
    let key = vault.opencx_api_key(conn).map_err(|e| {
        catalog::CONNECTION_SECRET_UNREADABLE.diagnose(format!("the OpenCX API key: {e}"))
    })?;
    let url = super::opencx::base_url(Some(&conn.base_url), allow_insecure)
        .map_err(|why| catalog::OPENCX_BASE_URL_INVALID.diagnose(why))?;
    Ok((url, key))
}

/// Reads a saved connection back into credentials, opening the client secret.
pub fn credentials(
    vault: &Vault,
    conn: &ConnectionRow,
    allow_insecure: bool,
) -> Result<(Credentials, WorkstreamId), Diagnosis> {
    let secret = vault
        .client_secret(conn)
        .map_err(|e| catalog::CONNECTION_SECRET_UNREADABLE.diagnose(e.to_string()))?;
    let environment_url =
        EnvironmentUrl::parse(&conn.environment_url, allow_insecure).map_err(|why| {
            catalog::ENVIRONMENT_URL_INVALID.diagnose(format!("environment_url {why}"))
        })?;
    let workstream = WorkstreamId::parse(&conn.workstream_id).map_err(|why| {
        catalog::DEFAULT_QUEUE_ID_INVALID.diagnose(format!("default_queue_id {why}"))
    })?;
    Ok((
        Credentials {
            tenant_id: conn.tenant_id.clone(),
            client_id: conn.client_id.clone(),
            client_secret: secret,
            environment_url,
        },
        workstream,
    ))
}
