//! A fresh PostgreSQL schema for a test, shared by the integration suite and the soak tests.

/// Creates the schema `{prefix}{uuid}` in the database at `base_url`; returns its name and a
/// `HANDOFF_DATABASE_URL` whose connections use it (`search_path`).
pub async fn create_schema(base_url: &str, prefix: &str) -> (String, String) {
    sqlx::any::install_default_drivers();
    let schema = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(base_url)
        .await
        .expect("PostgreSQL answers at HANDOFF_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let url = schema_url(base_url, &schema);
    (schema, url)
}

/// `base_url` with every connection's `search_path` set to `schema`.
pub fn schema_url(base_url: &str, schema: &str) -> String {
    let sep = if base_url.contains('?') { '&' } else { '?' };
    format!("{base_url}{sep}options=-c%20search_path%3D{schema}")
}
