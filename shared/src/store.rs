//! Storage for a service: one implementation that runs on SQLite (embedded mode, a file
//! per service) and PostgreSQL (distributed mode, a database per service).
//!
//! Queries are written once in the dialect both accept (`$1` placeholders, `RETURNING`,
//! `ON CONFLICT`, integer timestamps); only the DDL differs, so each service ships one
//! migration set per backend. See docs/decisions/0002-storage.md.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};
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
/// On SQLite, writes go through a single connection so that write transactions queue in
/// the process instead of failing with `SQLITE_BUSY`; reads use a pool beside it (WAL).
/// On PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    write: AnyPool,
    read: AnyPool,
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
            .run(&store.write)
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
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                // A file does not hang up: pinging it on every acquire would only add a
                // round trip to the connection's thread.
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                             PRAGMA wal_autocheckpoint = 0;",
                        )
                        .await?;
                        Ok(())
                    })
                })
        };
        let write = pool(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let read = pool(4).connect_with(options).await?;
        let checkpointer = spawn_checkpointer(read.clone());
        Ok(Store {
            backend: Backend::Sqlite,
            write,
            read,
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
            write: pool.clone(),
            read: pool,
            _checkpointer: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads outside a transaction.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for writes outside a transaction.
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes cannot wait for
    /// another writer and fails with `SQLITE_BUSY` instead.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// How often a SQLite file's write-ahead log is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Checkpoint a SQLite file in the background, every [`CHECKPOINT_EVERY`], until the
/// returned guard is dropped.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses the log's size
/// limit, and with `synchronous = NORMAL` it is the only step that waits for the disk
/// (two fsyncs): every writer queued behind that commit waits too. Connections are
/// opened with `wal_autocheckpoint = 0` and a `PASSIVE` checkpoint on a reader
/// connection does the work beside the writer instead of in its way.
pub(crate) fn spawn_checkpointer<DB: sqlx::Database>(pool: sqlx::Pool<DB>) -> DropGuard
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = tick.tick() => {}
            }
            match sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                Ok(_) => {}
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
