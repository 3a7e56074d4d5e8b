//! Payload upgrades: rows stored in an older payload shape, read in pages and rewritten in
//! the current one (`webhook::upgrade` decides the new payload; the store only moves rows).

use super::{col, Store, StoreError};

/// A stored payload of an older version.
#[derive(Debug, Clone)]
pub struct StoredPayload {
    pub handoff_id: String,
    pub org_id: String,
    pub payload: String,
}

impl Store {
    /// Up to `limit` unredacted handoffs whose payload is `version`, in `handoff_id` order
    /// after `after` (`""` for the first page).
    pub async fn payloads_of_version(
        &self,
        version: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<StoredPayload>, StoreError> {
        let rows = sqlx::query(
            "SELECT handoff_id, org_id, payload FROM handoffs WHERE payload_version = $1 \
             AND redacted_at IS NULL AND handoff_id > $2 ORDER BY handoff_id LIMIT $3",
        )
        .bind(version)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredPayload {
                    handoff_id: col(row, "handoff_id")?,
                    org_id: col(row, "org_id")?,
                    payload: col(row, "payload")?,
                })
            })
            .collect()
    }

    /// Replaces the payload of `handoff_id` if it is still `from` (another replica may have
    /// upgraded it first). Returns whether this call did.
    pub async fn upgrade_payload(
        &self,
        handoff_id: &str,
        from: i64,
        to: i64,
        payload: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE handoffs SET payload = $1, payload_version = $2 \
             WHERE handoff_id = $3 AND payload_version = $4 AND redacted_at IS NULL",
        )
        .bind(payload)
        .bind(to)
        .bind(handoff_id)
        .bind(from)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
