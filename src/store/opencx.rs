//! Orgs' OpenCX connections (`opencx_connections`): the base URL, the sealed API key and
//! the org's OpenCX settings. This module never sees the key in clear.

use sqlx::any::AnyRow;

use super::{col, Store, StoreError};

/// One org's saved OpenCX connection.
#[derive(Debug, Clone)]
pub struct OpenCxConnectionRow {
    pub org_id: String,
    /// The API's base URL, e.g. `https://api.open.cx`.
    pub base_url: String,
    /// The org's OpenCX API key, sealed.
    pub api_key_enc: String,
    /// Whether an OpenCX contact email counts as verified when the session carries no
    /// verified flag of its own.
    pub contact_emails_verified: bool,
    /// The visitor-facing message that carries `dynamics365_chat_id` back to the session;
    /// `None`: no write-back.
    pub write_back_message: Option<String>,
    /// `active` or `failing`.
    pub status: String,
    /// The last check results, as the JSON array the API returns.
    pub checks: String,
    pub last_checked_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "org_id, base_url, api_key_enc, contact_emails_verified, \
     write_back_message, status, checks, last_checked_at, created_at, updated_at";

impl OpenCxConnectionRow {
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let flag: i64 = col(row, "contact_emails_verified")?;
        Ok(Self {
            org_id: col(row, "org_id")?,
            base_url: col(row, "base_url")?,
            api_key_enc: col(row, "api_key_enc")?,
            contact_emails_verified: flag != 0,
            write_back_message: col(row, "write_back_message")?,
            status: col(row, "status")?,
            checks: col(row, "checks")?,
            last_checked_at: col(row, "last_checked_at")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        })
    }
}

impl Store {
    /// Every org's OpenCX connection, by org id.
    pub async fn opencx_connections(&self) -> Result<Vec<OpenCxConnectionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM opencx_connections ORDER BY org_id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(OpenCxConnectionRow::from_row).collect()
    }

    /// The org's OpenCX connection, if one is saved.
    pub async fn opencx_connection(
        &self,
        org_id: &str,
    ) -> Result<Option<OpenCxConnectionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM opencx_connections WHERE org_id = $1"
        ))
        .bind(org_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(OpenCxConnectionRow::from_row).transpose()
    }

    /// Creates or replaces the org's OpenCX connection in one statement (the previous one
    /// stays until this commits; `created_at` keeps the first save's).
    pub async fn save_opencx_connection(&self, c: &OpenCxConnectionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO opencx_connections (org_id, base_url, api_key_enc, contact_emails_verified, \
             write_back_message, status, checks, last_checked_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (org_id) DO UPDATE SET base_url = excluded.base_url, \
             api_key_enc = excluded.api_key_enc, \
             contact_emails_verified = excluded.contact_emails_verified, \
             write_back_message = excluded.write_back_message, status = excluded.status, \
             checks = excluded.checks, last_checked_at = excluded.last_checked_at, \
             updated_at = excluded.updated_at",
        )
        .bind(&c.org_id)
        .bind(&c.base_url)
        .bind(&c.api_key_enc)
        .bind(i64::from(c.contact_emails_verified))
        .bind(c.write_back_message.as_deref())
        .bind(&c.status)
        .bind(&c.checks)
        .bind(c.last_checked_at)
        .bind(c.updated_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records the result of checking a saved OpenCX connection again: `active` or
    /// `failing`, the checks (JSON), and when.
    pub async fn record_opencx_check(
        &self,
        org_id: &str,
        status: &str,
        checks: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE opencx_connections SET status = $1, checks = $2, last_checked_at = $3, \
             updated_at = $3 WHERE org_id = $4",
        )
        .bind(status)
        .bind(checks)
        .bind(now)
        .bind(org_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Deletes the org's OpenCX connection; `false` if there was none.
    pub async fn delete_opencx_connection(&self, org_id: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM opencx_connections WHERE org_id = $1")
            .bind(org_id)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }
}
