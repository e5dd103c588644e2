//! Storage for a service: one implementation that runs on SQLite (embedded mode, a file
//! per service) and PostgreSQL (distributed mode, a database per service).
//!
//! Queries are written once in the dialect both accept (`$1` placeholders, `RETURNING`,
//! `ON CONFLICT`, integer timestamps); only the DDL differs, so each service ships one
//! migration set per backend. See docs/decisions/0002-storage.md.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyTransactionManager};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, TransactionManager};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the services keep their data.
#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    /// One SQLite file per service under this directory.
    Embedded { data_dir: PathBuf },
    /// One PostgreSQL database per service on this server; the URL's database name
    /// (default `ticketing`) is the prefix: `ticketing_auth`, `ticketing_orders`, …
    Postgres { url: String },
}

impl DatabaseConfig {
    pub fn is_embedded(&self) -> bool {
        matches!(self, DatabaseConfig::Embedded { .. })
    }

    /// The database of one service.
    pub fn location(&self, service: &str) -> anyhow::Result<DbLocation> {
        match self {
            DatabaseConfig::Embedded { data_dir } => Ok(DbLocation::Sqlite {
                path: data_dir.join(format!("{service}.db")),
            }),
            DatabaseConfig::Postgres { url } => {
                let mut parsed = url::Url::parse(url).context("invalid PostgreSQL URL")?;
                let prefix = parsed.path().trim_start_matches('/').to_owned();
                let prefix = if prefix.is_empty() {
                    "ticketing".to_owned()
                } else {
                    prefix
                };
                parsed.set_path(&format!("/{prefix}_{service}"));
                Ok(DbLocation::Postgres {
                    url: parsed.to_string(),
                })
            }
        }
    }
}

/// The database of one service.
#[derive(Debug, Clone)]
pub enum DbLocation {
    Sqlite { path: PathBuf },
    Postgres { url: String },
}

impl DbLocation {
    pub fn from_url(url: &str) -> DbLocation {
        match url.strip_prefix("sqlite://") {
            Some(path) => DbLocation::Sqlite { path: path.into() },
            None => DbLocation::Postgres {
                url: url.to_owned(),
            },
        }
    }
}

/// The migrations of one service, one set per backend.
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// A service's database handle.
///
/// On SQLite, writes go through a single connection that the store owns, so that write
/// transactions queue in the process instead of failing with `SQLITE_BUSY`; reads use a
/// pool beside it (WAL). The writer is held, not pooled: sqlx's pool pings a connection
/// every time it is returned, and on SQLite each ping is a round trip to the
/// connection's thread, a third of the cost of a small transaction.
/// On PostgreSQL reads and writes share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// SQLite only.
    writer: Option<Arc<Writer>>,
    /// SQLite: the readers. PostgreSQL: every connection.
    pool: AnyPool,
    /// SQLite: stops the background checkpointer when the last clone is dropped.
    _checkpointer: Option<Arc<DropGuard>>,
}

impl Store {
    /// Open (creating if missing) and migrate a service's database.
    pub async fn open(location: &DbLocation, migrations: &Migrations) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let store = match location {
            DbLocation::Sqlite { path } => Self::open_sqlite(path).await?,
            DbLocation::Postgres { url } => Self::open_postgres(url).await?,
        };
        let migrator = match store.backend {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        migrator
            .run(&mut *store.write().await?)
            .await
            .context("running database migrations")?;
        Ok(store)
    }

    async fn open_sqlite(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating data directory {}", dir.display()))?;
            }
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let options = AnyConnectOptions::from_str(&url)?;
        let options_for_writer = options.clone();
        let writer = connect_sqlite(&options)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let read = AnyPoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // A file does not hang up: pinging it on every acquire would only add a
            // round trip to the connection's thread.
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let writer = Arc::new(Writer {
            conn: Arc::new(Mutex::new(Some(writer))),
            options: options_for_writer,
        });
        let checkpointer = {
            let writer = writer.clone();
            spawn_checkpointer(wal_path(path), read.clone(), move || {
                writer.clone().checkpoint()
            })
        };
        Ok(Store {
            backend: Backend::Sqlite,
            writer: Some(writer),
            pool: read,
            _checkpointer: Some(Arc::new(checkpointer)),
        })
    }

    async fn open_postgres(url: &str) -> anyhow::Result<Store> {
        ensure_postgres_database(url).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Store {
            backend: Backend::Postgres,
            writer: None,
            pool,
            _checkpointer: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads outside a transaction.
    pub fn reader(&self) -> &AnyPool {
        &self.pool
    }

    /// The connection for writes outside a transaction (SQLite: the writer, waited
    /// for while a transaction holds it).
    pub async fn write(&self) -> Result<WriteConn, sqlx::Error> {
        match &self.writer {
            Some(writer) => Ok(WriteConn::Held(writer.lock().await?)),
            None => Ok(WriteConn::Pooled(self.pool.acquire().await?)),
        }
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes cannot wait for
    /// another writer and fails with `SQLITE_BUSY` instead.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                // Open before beginning: if this future is dropped after BEGIN ran, the
                // Tx's drop still rolls it back. (SQLite's connection thread counts the
                // transaction itself, so the count is right whenever we stop.)
                let mut tx = Tx {
                    conn: self.write().await?,
                    open: true,
                };
                AnyTransactionManager::begin(&mut tx.conn, Some("BEGIN IMMEDIATE".into())).await?;
                Ok(tx)
            }
            Backend::Postgres => {
                // sqlx counts a PostgreSQL transaction only once BEGIN is answered: a
                // begin dropped while waiting leaves the server inside a transaction the
                // connection does not know about, and the pool hands it to the next
                // caller, whose writes then never commit. Beginning in a task of its own
                // cannot be interrupted; if nobody waits for the Tx any more, it is
                // dropped there and rolls back.
                let pool = self.pool.clone();
                tokio::spawn(async move {
                    let mut tx = Tx {
                        conn: WriteConn::Pooled(pool.acquire().await?),
                        open: true,
                    };
                    AnyTransactionManager::begin(&mut tx.conn, None).await?;
                    Ok(tx)
                })
                .await
                .map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))?
            }
        }
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            if let Some(conn) = writer.conn.lock().await.take() {
                let _ = conn.close().await;
            }
        }
        self.pool.close().await;
    }
}

/// The SQLite writer, and how to open it again.
#[derive(Debug)]
struct Writer {
    /// `None` once the store is closed.
    conn: Arc<Mutex<Option<AnyConnection>>>,
    options: AnyConnectOptions,
}

impl Writer {
    /// Wait for the writer, and hand it out clean: a transaction left open (a commit
    /// that failed and whose rollback failed too: disk full, I/O error) is rolled back,
    /// and a connection that cannot even do that is replaced.
    async fn lock(&self) -> Result<HeldConn, sqlx::Error> {
        let guard = self.conn.clone().lock_owned().await;
        let mut conn = OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_closed| sqlx::Error::PoolClosed)?;
        if AnyTransactionManager::get_transaction_depth(&conn) > 0 {
            if let Err(err) = AnyTransactionManager::rollback(&mut conn).await {
                tracing::warn!(error = %err, "SQLite writer stuck in a transaction; reopening it");
                *conn = connect_sqlite(&self.options).await?;
            }
        }
        Ok(conn)
    }

    /// The last step of [`spawn_checkpointer`], holding the writer.
    async fn checkpoint(self: Arc<Self>) -> Result<(), sqlx::Error> {
        let mut conn = WriteConn::Held(self.lock().await?);
        sqlx::query(CHECKPOINT).execute(&mut *conn).await.map(drop)
    }
}

async fn connect_sqlite(options: &AnyConnectOptions) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = AnyConnection::connect_with(options).await?;
    conn.execute(SQLITE_PRAGMAS).await?;
    Ok(conn)
}

const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; \
     PRAGMA journal_size_limit = 16777216;";

/// The SQLite writer, locked.
type HeldConn = OwnedMappedMutexGuard<Option<AnyConnection>, AnyConnection>;

/// A connection to write with: the SQLite writer (held until dropped) or a pooled one.
pub enum WriteConn {
    Held(HeldConn),
    Pooled(PoolConnection<Any>),
}

impl Deref for WriteConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            WriteConn::Held(conn) => conn,
            WriteConn::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteConn::Held(conn) => conn,
            WriteConn::Pooled(conn) => conn,
        }
    }
}

/// A write transaction: use `&mut *tx` as the executor, then [`commit`](Tx::commit).
/// Dropped without a commit, it rolls back (queued before the connection's next use).
pub struct Tx {
    conn: WriteConn,
    open: bool,
}

impl Tx {
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        AnyTransactionManager::commit(&mut self.conn).await?;
        self.open = false;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        AnyTransactionManager::rollback(&mut self.conn).await?;
        self.open = false;
        Ok(())
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            AnyTransactionManager::start_rollback(&mut self.conn);
        }
    }
}

/// The write-ahead log of the SQLite file at `db`.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// How often a SQLite file's write-ahead log is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

pub(crate) const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// Checkpoint a SQLite file in the background until the returned guard is dropped.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses the log's size
/// limit, and with `synchronous = NORMAL` it is the only step that waits for the disk
/// (two fsyncs): every writer queued behind that commit waits too. Connections are
/// opened with `wal_autocheckpoint = 0` instead, and every [`CHECKPOINT_EVERY`] a
/// `PASSIVE` checkpoint on a reader connection copies the log beside the writer.
///
/// That alone never lets the log start over under steady writes (it grew by hundreds of
/// megabytes a minute in the benchmarks): the log is reset only by a write transaction
/// that begins with every frame copied back, and commits keep landing while a reader's
/// checkpoint runs. So `on_writer` then finishes the checkpoint holding the writer — by
/// then only the frames of the last few milliseconds are left — and the next write
/// transaction resets the log; `journal_size_limit` trims the file when it does.
pub(crate) fn spawn_checkpointer<DB, F, Fut>(
    wal: PathBuf,
    readers: sqlx::Pool<DB>,
    on_writer: F,
) -> DropGuard
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), sqlx::Error>> + Send,
{
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = None;
        loop {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Nothing written since the last round (an idle service): nothing to do.
            let modified = std::fs::metadata(&wal).and_then(|m| m.modified()).ok();
            if modified.is_none() || modified == last_seen {
                continue;
            }
            last_seen = modified;
            let mut done = sqlx::raw_sql(CHECKPOINT).execute(&readers).await.map(drop);
            if done.is_ok() {
                done = on_writer().await;
            }
            match done {
                Ok(()) => {}
                Err(sqlx::Error::PoolClosed) => return,
                Err(err) => tracing::warn!(error = %err, "SQLite checkpoint failed"),
            }
        }
    });
    stop.drop_guard()
}

/// Create the service's database on its server when it does not exist yet.
async fn ensure_postgres_database(url: &str) -> anyhow::Result<()> {
    let mut parsed = url::Url::parse(url).context("invalid PostgreSQL URL")?;
    let name = parsed.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(!name.is_empty(), "the PostgreSQL URL names no database");
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {name:?} must be letters, digits and underscores"
    );
    parsed.set_path("/postgres");
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(parsed.as_str())
        .await
        .context("connecting to PostgreSQL")?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&admin)
        .await?
        .is_some();
    if !exists {
        match sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another process created it between our check and our create.
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("42P04") || e.is_unique_violation() => {}
            Err(e) => return Err(e).context("creating database"),
        }
    }
    admin.close().await;
    Ok(())
}
