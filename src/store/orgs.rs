//! Orgs (tenants) and their Dynamics connections. Secrets are stored sealed
//! (see `connection::crypto`); this module never sees them in clear.

use sqlx::any::AnyRow;

use super::{col, Store, StoreError};
use crate::domain::catalog::Diagnosis;

/// One stored org.
#[derive(Debug, Clone)]
pub struct OrgRow {
    pub org_id: String,
    pub name: String,
    pub callback_url: Option<String>,
    /// The current webhook secret, sealed.
    pub webhook_secret_enc: String,
    /// The secret before the last rotation, sealed; accepted until `previous_secret_expires_at`.
    pub previous_webhook_secret_enc: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[cfg(test)]
impl OrgRow {
    /// A new org for unit tests: no rotation in progress, created at 0.
    pub(crate) fn for_tests(
        org_id: &str,
        webhook_secret_enc: String,
        callback_url: Option<&str>,
    ) -> Self {
        Self {
            org_id: org_id.into(),
            name: org_id.into(),
            callback_url: callback_url.map(str::to_owned),
            webhook_secret_enc,
            previous_webhook_secret_enc: None,
            previous_secret_expires_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }
}

const ORG_COLUMNS: &str =
    "org_id, name, callback_url, webhook_secret_enc, previous_webhook_secret_enc, \
     previous_secret_expires_at, created_at, updated_at";

impl OrgRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(Self {
            org_id: col(row, "org_id")?,
            name: col(row, "name")?,
            callback_url: col(row, "callback_url")?,
            webhook_secret_enc: col(row, "webhook_secret_enc")?,
            previous_webhook_secret_enc: col(row, "previous_webhook_secret_enc")?,
            previous_secret_expires_at: col(row, "previous_secret_expires_at")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

/// One org's saved Dynamics connection.
#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub org_id: String,
    pub tenant_id: String,
    pub client_id: String,
    /// The client secret, sealed.
    pub client_secret_enc: String,
    pub environment_url: String,
    /// The workstream GUID (`default_queue_id` in OpenCX's API and ours).
    pub workstream_id: String,
    pub create_contact_if_missing: bool,
    /// The incident settings (`domain::incident::IncidentSettings` as JSON); `None` reads as
    /// the defaults.
    pub incidents: Option<String>,
    /// When a handoff last reached Dynamics through this connection (Unix ms).
    pub last_success_at: Option<i64>,
    /// When a handoff last failed for good for a reason of the connection, and why
    /// (`domain::catalog::is_connection_level`).
    pub last_failure_at: Option<i64>,
    pub last_failure: Option<Diagnosis>,
    /// Since when handoffs have failed that way, with no success since (Unix ms).
    pub failing_since: Option<i64>,
    /// When the client secret expires, as the admin entered it (Unix ms).
    pub client_secret_expires_at: Option<i64>,
    /// `active` or `failing`.
    pub status: String,
    /// The last check results, as the JSON array the API returns.
    pub checks: String,
    pub last_checked_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const CONNECTION_COLUMNS: &str = "org_id, tenant_id, client_id, client_secret_enc, environment_url, \
     workstream_id, create_contact_if_missing, incidents, status, checks, last_checked_at, created_at, updated_at, \
     last_success_at, last_failure_at, last_failure, failing_since, client_secret_expires_at";

impl ConnectionRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let flag: i64 = col(row, "create_contact_if_missing")?;
        Ok(Self {
            org_id: col(row, "org_id")?,
            tenant_id: col(row, "tenant_id")?,
            client_id: col(row, "client_id")?,
            client_secret_enc: col(row, "client_secret_enc")?,
            environment_url: col(row, "environment_url")?,
            workstream_id: col(row, "workstream_id")?,
            create_contact_if_missing: flag != 0,
            incidents: col(row, "incidents")?,
            last_success_at: col(row, "last_success_at")?,
            last_failure_at: col(row, "last_failure_at")?,
            last_failure: col::<Option<String>>(row, "last_failure")?
                .and_then(|text| serde_json::from_str(&text).ok()),
            failing_since: col(row, "failing_since")?,
            client_secret_expires_at: col(row, "client_secret_expires_at")?,
            status: col(row, "status")?,
            checks: col(row, "checks")?,
            last_checked_at: col(row, "last_checked_at")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

impl Store {
    pub async fn org(&self, org_id: &str) -> Result<Option<OrgRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ORG_COLUMNS} FROM orgs WHERE org_id = $1"))
            .bind(org_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(OrgRow::from_row).transpose()
    }

    /// Every org, by id.
    pub async fn orgs(&self) -> Result<Vec<OrgRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY org_id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(OrgRow::from_row).collect()
    }

    /// Creates an org; `false` if it already exists (nothing changed).
    pub async fn create_org(&self, org: &OrgRow) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO orgs (org_id, name, callback_url, webhook_secret_enc, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(&org.org_id)
        .bind(&org.name)
        .bind(org.callback_url.as_deref())
        .bind(&org.webhook_secret_enc)
        .bind(org.created_at)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Updates an org's name and callback URL and, with `rotate_to` (`(sealed secret,
    /// until)`), makes that webhook secret current while the old one stays valid until
    /// `until` (Unix ms): one statement, so nothing is half-saved.
    pub async fn update_org(
        &self,
        org_id: &str,
        name: &str,
        callback_url: Option<&str>,
        rotate_to: Option<(&str, i64)>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (secret, until) = rotate_to.unzip();
        // Every right-hand side reads the row as it was, so the old current secret becomes
        // the previous one.
        sqlx::query(
            "UPDATE orgs SET name = $1, callback_url = $2, updated_at = $3, \
             previous_webhook_secret_enc = CASE WHEN $5 IS NULL THEN previous_webhook_secret_enc ELSE webhook_secret_enc END, \
             previous_secret_expires_at = CASE WHEN $5 IS NULL THEN previous_secret_expires_at ELSE $6 END, \
             webhook_secret_enc = COALESCE($5, webhook_secret_enc) \
             WHERE org_id = $4",
        )
        .bind(name)
        .bind(callback_url)
        .bind(now)
        .bind(org_id)
        .bind(secret)
        .bind(until)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Makes `new_secret_enc` the current webhook secret; the current one stays valid until
    /// `previous_expires_at`.
    pub async fn rotate_webhook_secret(
        &self,
        org_id: &str,
        new_secret_enc: &str,
        previous_expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orgs SET previous_webhook_secret_enc = webhook_secret_enc, \
             previous_secret_expires_at = $1, webhook_secret_enc = $2, updated_at = $3 WHERE org_id = $4",
        )
        .bind(previous_expires_at)
        .bind(new_secret_enc)
        .bind(now)
        .bind(org_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Forgets the rotated-out webhook secret at once (after a leak), so only the current
    /// one verifies. Returns whether there was one to forget.
    pub async fn revoke_previous_webhook_secret(
        &self,
        org_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let revoked = sqlx::query(
            "UPDATE orgs SET previous_webhook_secret_enc = NULL, previous_secret_expires_at = NULL, \
             updated_at = $1 WHERE org_id = $2 AND previous_webhook_secret_enc IS NOT NULL",
        )
        .bind(now)
        .bind(org_id)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(revoked == 1)
    }

    pub async fn connection(&self, org_id: &str) -> Result<Option<ConnectionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE org_id = $1"
        ))
        .bind(org_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(ConnectionRow::from_row).transpose()
    }

    /// Every org's connection, by org id (the status overview reads them in one query).
    pub async fn connections(&self) -> Result<Vec<ConnectionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY org_id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(ConnectionRow::from_row).collect()
    }

    /// Creates or replaces an org's connection (one statement: the previous one stays until
    /// this commits).
    pub async fn save_connection(&self, c: &ConnectionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO connections (org_id, tenant_id, client_id, client_secret_enc, environment_url, \
             workstream_id, create_contact_if_missing, status, checks, last_checked_at, created_at, updated_at, incidents, \
             client_secret_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13) \
             ON CONFLICT (org_id) DO UPDATE SET tenant_id = excluded.tenant_id, client_id = excluded.client_id, \
             client_secret_enc = excluded.client_secret_enc, environment_url = excluded.environment_url, \
             workstream_id = excluded.workstream_id, \
             create_contact_if_missing = excluded.create_contact_if_missing, incidents = excluded.incidents, status = excluded.status, \
             failing_since = NULL, client_secret_expires_at = excluded.client_secret_expires_at, \
             checks = excluded.checks, last_checked_at = excluded.last_checked_at, updated_at = excluded.updated_at",
        )
        .bind(&c.org_id)
        .bind(&c.tenant_id)
        .bind(&c.client_id)
        .bind(&c.client_secret_enc)
        .bind(&c.environment_url)
        .bind(&c.workstream_id)
        .bind(i64::from(c.create_contact_if_missing))
        .bind(&c.status)
        .bind(&c.checks)
        .bind(c.last_checked_at)
        .bind(c.updated_at)
        .bind(c.incidents.as_deref())
        .bind(c.client_secret_expires_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records the result of checking a saved connection again: `active` or `failing`, the
    /// checks (JSON), and when.
    pub async fn record_connection_check(
        &self,
        org_id: &str,
        status: &str,
        checks: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        // `failing_since` stays: checks that pass while handoffs fail (a privilege they do
        // not probe) must not hide the failures; a handoff that succeeds clears it.
        sqlx::query(
            "UPDATE connections SET status = $1, checks = $2, last_checked_at = $3, updated_at = $3 WHERE org_id = $4",
        )
        .bind(status)
        .bind(checks)
        .bind(now)
        .bind(org_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The org ids of connections last checked before `before` (Unix ms), oldest first, at
    /// most `limit`: those the worker checks again on its schedule.
    pub async fn connections_checked_before(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id FROM connections WHERE last_checked_at < $1 \
             ORDER BY last_checked_at, org_id LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| col(row, "org_id")).collect()
    }

    /// Deletes an org's connection; `false` if there was none.
    pub async fn delete_connection(&self, org_id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM connections WHERE org_id = $1")
            .bind(org_id)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }
}
