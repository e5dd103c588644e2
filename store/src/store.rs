//! A service's database handle.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::Notify;
use tokio_util::sync::DropGuard;

use crate::config::{Backend, DbLocation};
use crate::engine::{Changes, Engine, TxConn};
use crate::error::Error;
use crate::migrations::Migrations;
use crate::postgres;
use crate::query::{query, On};
use crate::sqlite::{self, Lite};
use crate::tx::Tx;

/// A service's database handle.
///
/// On SQLite the store keeps its own connections and runs statements on the calling
/// thread (`sqlite/`): writes go through a single connection, so that write
/// transactions queue in the process instead of failing with `SQLITE_BUSY`; reads use a
/// few connections beside it (WAL). On PostgreSQL reads and writes share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
    changes: Changes,
    /// Woken when a transaction marked with [`Tx::signal_on_commit`] commits.
    signal: Arc<Notify>,
    /// SQLite: stops the background checkpointer when the last clone is dropped.
    _checkpointer: Option<Arc<DropGuard>>,
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
            .migrator(crate::Backend::Sqlite)?
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
        On::read(&self.engine)
    }

    /// Where a write outside a transaction runs (atomic by itself; on SQLite it waits
    /// for the writer while a transaction holds it).
    pub fn writer(&self) -> On<'_> {
        On::write(&self.engine, &self.changes)
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes cannot wait for
    /// another writer and fails with `SQLITE_BUSY` instead. Transactions that queue for
    /// the writer together commit together (`sqlite/writer.rs`), each still atomic.
    pub async fn begin(&self) -> Result<Tx, Error> {
        let (changes, signal) = (self.changes.clone(), self.signal.clone());
        let conn = match &self.engine {
            Engine::Lite(lite) => TxConn::Lite(lite.begin().await?),
            Engine::Pg(pool) => TxConn::Pg(postgres::begin(pool).await?),
        };
        Ok(Tx::new(conn, changes, signal))
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
    /// Create tables a platform crate keeps outside the service's migrations (event
    /// tables, idempotency keys, revoked sessions), each statement `IF NOT EXISTS`, in one
    /// transaction. On PostgreSQL it holds the advisory lock `lock` (one per caller):
    /// replicas starting together would otherwise race on `CREATE TABLE IF NOT EXISTS`,
    /// which is not atomic against a concurrent create.
    pub async fn install<'s>(
        &self,
        lock: i64,
        statements: impl IntoIterator<Item = &'s str>,
    ) -> Result<(), crate::Error> {
        let mut tx = self.begin().await?;
        if self.backend() == Backend::Postgres {
            crate::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock)
                .execute(&mut tx)
                .await?;
        }
        for statement in statements {
            crate::query(statement).execute(&mut tx).await?;
        }
        tx.commit().await
    }

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
