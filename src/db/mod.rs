//! Diesel over SQLite (embedded default) or PostgreSQL, chosen by the database URL.
//! Every query runs on the blocking pool, never on an actix thread.

pub mod admin;
mod connection;
mod group_commit;
pub mod idempotency;
pub mod lease_release;
pub mod models;
mod offset_update;
pub mod reconcile;
pub mod schema;
pub mod uploads;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use connection::on_backend;
pub use connection::{Backend, DbConnection};
pub use group_commit::{CommitRequest, CommitResult};

use diesel::r2d2::Pool;

use connection::ConnectionManager;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pool could not hand out a connection in time, or the server went away:
    /// clients should retry (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
}

/// The connection pool; cheap to clone.
/// Checkout waits and timeouts of one pool, for `/metrics`.
struct PoolEvents {
    pool: &'static str,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for PoolEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolEvents").field("pool", &self.pool).finish()
    }
}

impl diesel::r2d2::HandleEvent for PoolEvents {
    fn handle_checkout(&self, event: diesel::r2d2::event::CheckoutEvent) {
        if let Some(metrics) = &self.metrics {
            metrics.db_pool_wait.with_label_values(&[self.pool]).observe(event.duration().as_secs_f64());
        }
    }

    fn handle_timeout(&self, _event: diesel::r2d2::event::TimeoutEvent) {
        if let Some(metrics) = &self.metrics {
            metrics.db_pool_timeouts.with_label_values(&[self.pool]).inc();
        }
    }
}

#[derive(Clone)]
pub struct Repo {
    pool: Pool<ConnectionManager>,
    /// Lookups behind HEAD and request checks get their own connections, so that they never
    /// queue behind writers waiting for the database's write lock.
    read_pool: Pool<ConnectionManager>,
    backend: Backend,
    /// For checkouts r2d2 does not report (`try_get` fires no event).
    metrics: Option<Arc<Metrics>>,
    group_commit: Arc<group_commit::GroupCommit>,
}

impl Repo {
    /// Opens the pool (connecting eagerly, so a wrong URL fails at start-up) and runs the
    /// pending migrations of the matching backend.
    pub fn connect(
        url: &str,
        pool_size: u32,
        read_pool_size: u32,
        connect_timeout: Duration,
        fsync: bool,
        metrics: Option<Arc<Metrics>>,
    ) -> anyhow::Result<Repo> {
        let manager = ConnectionManager::new(url, fsync)?;
        let backend = manager.backend();
        // SQLite takes one writer at a time. With more write connections, the others found
        // the database locked and slept in SQLite's busy handler (1, 2, 5, 10 ms and up)
        // before trying again: with 50 uploads at once and fsync on, 756 such sleeps per 400
        // PATCHes. One connection makes writers queue on the pool instead, woken the moment
        // it is free.
        let pool_size = if backend == Backend::Sqlite { 1 } else { pool_size };
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(connect_timeout)
            .test_on_check_out(false)
            .event_handler(Box::new(PoolEvents { pool: "write", metrics: metrics.clone() }))
            .build(manager)?;
        // The schema must exist before the read pool opens its connections.
        pool.get()?.run_migrations()?;
        let read_pool = Pool::builder()
            .max_size(read_pool_size.max(1))
            .connection_timeout(connect_timeout)
            .test_on_check_out(false)
            .event_handler(Box::new(PoolEvents { pool: "read", metrics: metrics.clone() }))
            .build(ConnectionManager::new(url, fsync)?)?;
        Ok(Repo { pool, read_pool, backend, metrics, group_commit: Arc::default() })
    }

    /// (pool, connections in use, idle connections) for the metrics.
    pub fn pool_states(&self) -> [(&'static str, u32, u32); 2] {
        let (write, read) = (self.pool.state(), self.read_pool.state());
        [
            ("write", write.connections - write.idle_connections, write.idle_connections),
            ("read", read.connections - read.idle_connections, read.idle_connections),
        ]
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `query` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, query: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        off_thread(move || with_connection(&pool, query)).await
    }

    /// Runs a lookup by primary key (a few microseconds of work) on the read pool.
    ///
    /// On SQLite, with a connection free, it runs right here: a point read of the embedded
    /// database takes microseconds and WAL readers do not wait for the writer, whereas the
    /// trip to the blocking pool and back costs two thread wake-ups, which on a busy machine
    /// is what made HEADs slow (benchmark scenario 5: HEADs answered within 5 ms went from
    /// 88–94 % to 98–99.6 %). PostgreSQL reads cross the network and always go to the
    /// blocking pool, as do scans (`read`), which may take longer.
    pub async fn read_by_key<T, F>(&self, query: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        if self.backend == Backend::Sqlite {
            if let Some(mut conn) = self.read_pool.try_get() {
                if let Some(metrics) = &self.metrics {
                    metrics.db_pool_wait.with_label_values(&["read"]).observe(0.0);
                }
                return query(&mut conn).map_err(classify);
            }
        }
        self.read(query).await
    }

    /// Runs a read-only `query` on the read pool.
    pub async fn read<T, F>(&self, query: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.read_pool.clone();
        off_thread(move || with_connection(&pool, query)).await
    }

    /// Commits an append's new offset, in one transaction with the others committing at the
    /// same moment (group commit: one durable commit for all of them). Blocks: call it on a
    /// blocking thread.
    pub fn commit_progress_blocking(&self, request: CommitRequest) -> CommitResult {
        self.group_commit.commit(self, request)
    }

    /// [`Repo::commit_progress_blocking`] on the blocking pool.
    pub async fn commit_progress(&self, request: CommitRequest) -> CommitResult {
        let repo = self.clone();
        off_thread(move || repo.commit_progress_blocking(request)).await
    }

    /// Runs `query` synchronously (CLI commands, tests).
    pub fn run_blocking<T>(&self, query: impl FnOnce(&mut DbConnection) -> Result<T, DbError>) -> Result<T, DbError> {
        with_connection(&self.pool, query)
    }
}

/// Runs `work` on the blocking thread pool; a task that died there reads as the database
/// being unavailable.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, DbError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| DbError::Unavailable(format!("database task: {e}")))?
}

/// Runs `query` with a connection checked out of `pool` (waiting for one if need be).
fn with_connection<T>(
    pool: &Pool<ConnectionManager>,
    query: impl FnOnce(&mut DbConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut conn = pool.get().map_err(|e| DbError::Unavailable(e.to_string()))?;
    query(&mut conn).map_err(classify)
}

/// Connection-level failures are the database being unavailable, not a bad query.
fn classify(err: DbError) -> DbError {
    use diesel::result::Error as E;
    match err {
        DbError::Query(E::DatabaseError(diesel::result::DatabaseErrorKind::ClosedConnection, info)) => {
            DbError::Unavailable(info.message().to_owned())
        }
        DbError::Query(E::BrokenTransactionManager) => DbError::Unavailable("broken transaction".into()),
        other => other,
    }
}
