//! Persistence: orgs, connections, handoffs with their events, and the callback outbox.
//!
//! One schema, two backends through `sqlx::Any`: an embedded SQLite file (default; WAL
//! journal, `synchronous=FULL`, so a commit is on disk before the webhook is answered) and
//! PostgreSQL. On SQLite every write goes through one connection (writers queue for it in
//! the pool, in order, instead of sleeping in SQLite's busy handler, which retries a locked
//! database after growing sleeps of up to 100 ms) and reads through a pool of read-only
//! connections, which WAL lets run beside the writer. The queue's writes (deliveries,
//! outcomes) that wait together share one commit (`group.rs`). Queries use `$n`
//! placeholders and SQL both accept; the one difference (row claiming, which takes
//! `FOR UPDATE SKIP LOCKED` on Postgres) is chosen by [`Backend`]. Times are Unix
//! milliseconds.

pub mod callbacks;
pub mod events;
pub mod group;
pub mod handoffs;
pub mod intake;
pub mod opencx;
pub mod orgs;
pub mod queue;
pub mod replay;
pub mod reports;
pub mod retention;
pub mod sealed;
pub mod upgrade;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use callbacks::{CallbackRow, CallbackState};
pub use events::EventRow;
pub use handoffs::{Claim, HandoffRow, Intake, NewHandoff};
pub use opencx::OpenCxConnectionRow;
pub use orgs::{ConnectionRow, OrgRow};
pub use queue::{Claims, Lease, Queue};
pub use replay::Replayed;
pub use reports::{CallbackTrouble, Cursor, HandoffPage, HandoffQuery, ListedHandoff, QueueDepth};
pub use retention::{DEFAULT_RETENTION, REDACTED_PAYLOAD};
pub use sealed::SealedValue;
pub use upgrade::StoredPayload;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    /// A migration failed at startup.
    #[error("the database schema could not be migrated: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse (a row written by a newer version, or damage).
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// The URL names no supported backend.
    #[error("HANDOFF_DATABASE_URL must start with sqlite:// or postgres:// (got '{0}')")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether trying the same statement again can succeed: the database was unreachable,
    /// busy or timed out. A value it refused (SQLSTATE class 22 "data exception", e.g.
    /// 22021 for a NUL byte in text; class 23 "integrity constraint violation"; PostgreSQL
    /// "Appendix A. Error Codes") or stored data that does not parse will fail the same way
    /// every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(sqlx::Error::Database(db)) => !db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            Self::Unavailable(_) => true,
            Self::Migrate(_) | Self::Corrupt(_) | Self::UnsupportedUrl(_) => false,
        }
    }
}

/// The database handle. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Reads. On SQLite, read-only connections (`PRAGMA query_only`).
    pool: AnyPool,
    /// Writes. On SQLite, the one connection that writes; on PostgreSQL, `pool` itself.
    writer: AnyPool,
    backend: Backend,
    /// Who takes leases through this handle (`HANDOFF_INSTANCE_ID`): a lease id is
    /// `{owner}/{uuid}`, so the same instance, restarted, can take back its own leases at
    /// once (`Store::expire_own_leases`). Empty: a bare UUID, nothing to take back.
    owner: std::sync::Arc<str>,
    /// Writes waiting for the next group commit (`group.rs`).
    writes: std::sync::Arc<group::WriteQueue>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Connects and runs migrations. `url` is `sqlite://path` (the file is created if
    /// missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let mut url = format!("sqlite:{rest}");
            if !url.contains("mode=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            let shown = url.split('@').next_back().unwrap_or(url);
            return Err(StoreError::UnsupportedUrl(shown.to_owned()));
        };
        let options = |connections: u32, read_only: bool| {
            AnyPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                                 PRAGMA secure_delete = ON;",
                            )
                            .await?;
                            if read_only {
                                conn.execute("PRAGMA query_only = ON;").await?;
                            }
                        }
                        Ok(())
                    })
                })
        };
        let (writer, pool) = match backend {
            Backend::Sqlite => {
                let writer = options(1, false).connect(&url).await?;
                sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
                let readers = options(8, true).connect(&url).await?;
                (writer, readers)
            }
            Backend::Postgres => {
                let pool = options(16, false).connect(&url).await?;
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
                (pool.clone(), pool)
            }
        };
        Ok(Self {
            pool,
            writer,
            backend,
            owner: std::sync::Arc::from(""),
            writes: std::sync::Arc::default(),
        })
    }

    /// This store, taking leases as `owner` (see the `owner` field).
    pub fn owned_by(&self, owner: &str) -> Self {
        Self {
            owner: std::sync::Arc::from(owner),
            ..self.clone()
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Where reads go.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where writes go (statements that change rows and every transaction).
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Closes every connection (on shutdown).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name).map_err(|e| match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(format!("column {name}: {e}"))
        }
        other => StoreError::Unavailable(other),
    })
}

/// Helpers for the store's own tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::Store;

    /// A store on a new SQLite file in `dir`, with the org `acme` (no connection).
    pub(crate) async fn store_with_acme(dir: &std::path::Path) -> Store {
        let store = Store::connect(&format!("sqlite://{}", dir.join("store.db").display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO orgs (org_id, name, webhook_secret_enc, created_at, updated_at) \
             VALUES ('acme', 'Acme', 'x', 0, 0)",
        )
        .execute(store.writer())
        .await
        .unwrap();
        store
    }
}
