//! What the benchmarks share.

/// Drops and recreates the `public` schema of the PostgreSQL database at `url` (a bench's
/// fresh database).
pub async fn empty_postgres(url: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for sql in ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
}
