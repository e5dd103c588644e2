//! A service's database handle.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::Notify;
use tokio_util::sync::DropGuard;

use crate::sqlite::{self, Lite};
use crate::tx::{Tx, TxConn};
use crate::{postgres, query, Backend, DbLocation, Error, Migrations, On};

/// A service's database handle.
///
/// On SQLite the store keeps its own connections and runs statements on the calling
/// thread (`sqlite/`): writes go through a single connection, so that write
/// transactions queue in the process instead of failing with `SQLITE_BUSY`; reads use a
/// few connections beside it (WAL). On PostgreSQL reads and writes share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) engine: Engine,
    pub(crate) changes: Changes,
    /// Woken when a transaction marked with [`Tx::signal_on_commit`] commits.
    signal: Arc<Notify>,
    /// SQLite: stops the background checkpointer when the last clone is dropped.
    _checkpointer: Option<Arc<DropGuard>>,
}

#[derive(Clone, Debug)]
pub(crate) enum Engine {
    Lite(Arc<Lite>),
    Pg(AnyPool),
}

impl Store {
    /// Open (creating if missing) and migrate a service's database.
    pub async fn open(location: &DbLocation, migrations: &Migrations) -> anyhow::Result<Store> {
        match location {
            DbLocation::Sqlite { path } => Self::open_sqlite(path, migrations).await,
            DbLocation::Postgres { url } => {
                let pool = postgres::open(url, migrations).await?;
                Ok(Self::with(Engine::Pg(pool), None))
            }
        }
    }

    async fn open_sqlite(path: &Path, migrations: &Migrations) -> anyhow::Result<Store> {
        sqlite::memory::install();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating data directory {}", dir.display()))?;
            }
        }
        // Migrations are sqlx's: they run once, on a connection of its own.
        sqlx::any::install_default_drivers();
        let options =
            AnyConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))?;
        let mut conn = AnyConnection::connect_with(&options)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        conn.execute("PRAGMA journal_mode = WAL").await?;
        migrations
            .migrator()?
            .run(&mut conn)
            .await
            .context("running database migrations")?;
        conn.close().await?;
        Self::open_sqlite_unmigrated(path)
    }

    /// A SQLite store whose owner keeps the schema itself (the in-process bus).
    pub fn open_sqlite_unmigrated(path: &Path) -> anyhow::Result<Store> {
        sqlite::memory::install();
        let lite =
            Arc::new(Lite::open(path).with_context(|| format!("opening {}", path.display()))?);
        let checkpointer = sqlite::spawn_checkpointer(lite.clone());
        Ok(Self::with(Engine::Lite(lite), Some(Arc::new(checkpointer))))
    }

    /// An existing database, to read only (`ticketing audit`): no migrations, no
    /// checkpointer, nothing created; writes are refused.
    pub async fn open_read_only(location: &DbLocation) -> anyhow::Result<Store> {
        let engine = match location {
            DbLocation::Sqlite { path } => {
                anyhow::ensure!(path.exists(), "no database at {}", path.display());
                sqlite::memory::install();
                let lite = Lite::open_read_only(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                Engine::Lite(Arc::new(lite))
            }
            DbLocation::Postgres { url } => Engine::Pg(postgres::open_read_only(url).await?),
        };
        Ok(Self::with(engine, None))
    }

    fn with(engine: Engine, checkpointer: Option<Arc<DropGuard>>) -> Store {
        Store {
            engine,
            changes: Changes::default(),
            signal: Arc::new(Notify::new()),
            _checkpointer: checkpointer,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Lite(_) => Backend::Sqlite,
            Engine::Pg(_) => Backend::Postgres,
        }
    }

    /// Where reads outside a transaction run.
    pub fn reader(&self) -> On<'_> {
        On::Read(self)
    }

    /// Where a write outside a transaction runs (atomic by itself; on SQLite it waits
    /// for the writer while a transaction holds it).
    pub fn writer(&self) -> On<'_> {
        On::Write(self)
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes cannot wait for
    /// another writer and fails with `SQLITE_BUSY` instead. Transactions that queue for
    /// the writer together commit together (`sqlite/writer.rs`), each still atomic.
    pub async fn begin(&self) -> Result<Tx, Error> {
        let (changes, signal) = (self.changes.clone(), self.signal.clone());
        match &self.engine {
            Engine::Lite(lite) => Ok(Tx::new(TxConn::Lite(lite.begin().await?), changes, signal)),
            Engine::Pg(pool) => postgres::begin(pool, changes, signal).await,
        }
    }

    /// Woken (one waiter, a permit kept while nobody waits) after a transaction that
    /// called [`Tx::signal_on_commit`] commits: the outbox relay waits here, so a
    /// transaction that enqueued events is relayed at once.
    pub fn commit_signal(&self) -> &Notify {
        &self.signal
    }

    /// How many writes this process has committed to the store so far (see
    /// [`Changes`]); writes of other processes are not counted.
    pub fn changes(&self) -> u64 {
        self.changes.get()
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> anyhow::Result<()> {
        query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }

    pub async fn close(&self) {
        match &self.engine {
            Engine::Lite(lite) => lite.close().await,
            Engine::Pg(pool) => pool.close().await,
        }
    }
}

/// `ticketing_store_writer_wait_seconds{backend}`: how long a write waited for SQLite's
/// single writer, or a transaction for a PostgreSQL pool connection.
pub(crate) fn writer_waited(backend: &'static str, since: std::time::Instant) {
    metrics::histogram!("ticketing_store_writer_wait_seconds", "backend" => backend)
        .record(since.elapsed().as_secs_f64());
}

/// A count of the writes committed through a store (all its clones), bumped once each
/// is committed: a cache of query results taken with the count read *before* the query
/// is current while the count has not moved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Changes(Arc<AtomicU64>);

impl Changes {
    pub(crate) fn committed(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}
