//! Every sealed secret column, read and replaced as one set (`handoff-bridge rekey`).

use super::{col, Store, StoreError};

/// One stored secret, as sealed (`handoff-bridge rekey` reads and replaces these).
#[derive(Debug, Clone)]
pub struct SealedValue {
    pub table: &'static str,
    pub column: &'static str,
    pub org_id: String,
    pub sealed: String,
}

/// Every column that holds a sealed secret, with its table.
const SEALED_COLUMNS: [(&str, &str); 4] = [
    ("orgs", "webhook_secret_enc"),
    ("orgs", "previous_webhook_secret_enc"),
    ("connections", "client_secret_enc"),
    ("opencx_connections", "api_key_enc"),
];

impl Store {
    /// Every sealed secret stored (webhook secrets, previous webhook secrets, client
    /// secrets, OpenCX API keys).
    pub async fn sealed_values(&self) -> Result<Vec<SealedValue>, StoreError> {
        let mut values = Vec::new();
        for (table, column) in SEALED_COLUMNS {
            let rows = sqlx::query(&format!(
                "SELECT org_id, {column} AS sealed FROM {table} WHERE {column} IS NOT NULL"
            ))
            .fetch_all(self.pool())
            .await?;
            for row in &rows {
                values.push(SealedValue {
                    table,
                    column,
                    org_id: col(row, "org_id")?,
                    sealed: col(row, "sealed")?,
                });
            }
        }
        Ok(values)
    }

    /// Replaces `value` with `resealed` if it is still stored as read. Returns whether it
    /// was replaced.
    pub async fn replace_sealed(
        &self,
        value: &SealedValue,
        resealed: &str,
    ) -> Result<bool, StoreError> {
        let (table, column) = SEALED_COLUMNS
            .into_iter()
            .find(|(t, c)| *t == value.table && *c == value.column)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{}.{} is not a sealed column",
                    value.table, value.column
                ))
            })?;
        let replaced = sqlx::query(&format!(
            "UPDATE {table} SET {column} = $1 WHERE org_id = $2 AND {column} = $3"
        ))
        .bind(resealed)
        .bind(&value.org_id)
        .bind(&value.sealed)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(replaced == 1)
    }
}
