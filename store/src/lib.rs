//! Storage for a service: one implementation that runs on SQLite (embedded mode, a file
//! per service) and PostgreSQL (distributed mode, a database per service).
//!
//! Queries and migrations are written once in the dialect both accept (`$1`
//! placeholders, `RETURNING`, `ON CONFLICT`, integer timestamps, `BIGINT`/`TEXT`
//! columns). See docs/decisions/0002-storage.md.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyTransactionManager};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, TransactionManager};
use tokio_util::sync::{CancellationToken, DropGuard};

mod conflict;
pub mod event_tables;
mod query;
pub mod retention;
mod sqlite;
mod sqlite_memory;
mod sqlite_wal_writes;
mod value;
mod writer;

pub use conflict::OnUnique;
pub use query::{query, Decode, FromRow, On, Query, Row, Value};
use sqlite::Lite;

/// When a SQLite commit is on disk (`PRAGMA synchronous`), for every file the process
/// opens from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Synchronous {
    /// The log is synced at checkpoints, not at commits: a commit survives the process
    /// being killed, but a power cut or an OS crash can roll back the last ones.
    #[default]
    Normal = 0,
    /// The log is synced at every (group) commit: a commit survives a power cut too.
    Full = 1,
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Synchronous, String> {
        match s.to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            other => Err(format!("{other:?} is neither `normal` nor `full`")),
        }
    }
}

impl std::fmt::Display for Synchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        })
    }
}

/// Choose [`Synchronous`] for the SQLite files this process opens after the call (the
/// `--sqlite-synchronous` setting of the binary).
pub fn set_sqlite_synchronous(mode: Synchronous) {
    sqlite::set_synchronous(mode);
}

/// Whether the SQLite files this process opens after the call gather a commit's log
/// frames into one write (the `--sqlite-gathered-log` setting of the binary, on by
/// default; off opens them on SQLite's default VFS, to rule it out in an incident). See
/// docs/decisions/0022-a-commit-in-one-write.md.
pub fn set_sqlite_gathered_log(on: bool) {
    sqlite::set_gathered_log(on);
}

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

/// A service's migrations, `sqlx::migrate!("./migrations")`: one set for both engines.
pub use sqlx::migrate::Migrator;

/// A service's database handle.
///
/// On SQLite the store keeps its own connections and runs statements on the calling
/// thread ([`sqlite`]): writes go through a single connection, so that write
/// transactions queue in the process instead of failing with `SQLITE_BUSY`; reads use a
/// few connections beside it (WAL). On PostgreSQL reads and writes share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
    changes: Changes,
    /// SQLite: stops the background checkpointer when the last clone is dropped.
    _checkpointer: Option<Arc<DropGuard>>,
}

#[derive(Clone, Debug)]
enum Engine {
    Lite(Arc<Lite>),
    Pg(AnyPool),
}

impl Store {
    /// Open (creating if missing) and migrate a service's database.
    pub async fn open(location: &DbLocation, migrations: &Migrator) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        match location {
            DbLocation::Sqlite { path } => Self::open_sqlite(path, migrations).await,
            DbLocation::Postgres { url } => Self::open_postgres(url, migrations).await,
        }
    }

    async fn open_sqlite(path: &Path, migrator: &Migrator) -> anyhow::Result<Store> {
        sqlite_memory::install();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating data directory {}", dir.display()))?;
            }
        }
        // Migrations are sqlx's: they run once, on a connection of its own.
        let options =
            AnyConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", path.display()))?;
        let mut conn = AnyConnection::connect_with(&options)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        conn.execute("PRAGMA journal_mode = WAL").await?;
        migrator
            .run(&mut conn)
            .await
            .context("running database migrations")?;
        conn.close().await?;
        Self::open_sqlite_unmigrated(path)
    }

    /// A SQLite store whose owner keeps the schema itself (the in-process bus).
    pub fn open_sqlite_unmigrated(path: &Path) -> anyhow::Result<Store> {
        sqlite_memory::install();
        let lite =
            Arc::new(Lite::open(path).with_context(|| format!("opening {}", path.display()))?);
        let checkpointer = spawn_checkpointer(lite.clone());
        Ok(Store {
            changes: Changes::default(),
            engine: Engine::Lite(lite),
            _checkpointer: Some(Arc::new(checkpointer)),
        })
    }

    async fn open_postgres(url: &str, migrator: &Migrator) -> anyhow::Result<Store> {
        ensure_postgres_database(url).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .context("connecting to PostgreSQL")?;
        migrator
            .run(&pool)
            .await
            .context("running database migrations")?;
        Ok(Store {
            changes: Changes::default(),
            engine: Engine::Pg(pool),
            _checkpointer: None,
        })
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
    /// the writer together commit together (`writer.rs`), each still atomic.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match &self.engine {
            Engine::Lite(lite) => Ok(Tx {
                conn: TxConn::Lite(lite.begin().await?),
                open: true,
                changes: self.changes.clone(),
                deferred: Vec::new(),
            }),
            Engine::Pg(pool) => {
                // sqlx counts a PostgreSQL transaction only once BEGIN is answered: a
                // begin dropped while waiting leaves the server inside a transaction the
                // connection does not know about, and the pool hands it to the next
                // caller, whose writes then never commit. Beginning in a task of its own
                // cannot be interrupted; if nobody waits for the Tx any more, it is
                // dropped there and rolls back.
                let pool = pool.clone();
                let changes = self.changes.clone();
                tokio::spawn(async move {
                    let waiting = std::time::Instant::now();
                    let conn = pool.acquire().await;
                    writer_waited("postgres", waiting);
                    let mut tx = Tx {
                        conn: TxConn::Pg(conn?),
                        open: true,
                        changes,
                        deferred: Vec::new(),
                    };
                    if let TxConn::Pg(conn) = &mut tx.conn {
                        AnyTransactionManager::begin(conn, None).await?;
                    }
                    Ok(tx)
                })
                .await
                .map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))?
            }
        }
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
fn writer_waited(backend: &'static str, since: std::time::Instant) {
    metrics::histogram!("ticketing_store_writer_wait_seconds", "backend" => backend)
        .record(since.elapsed().as_secs_f64());
}

/// A write transaction: run queries on `&mut tx`, then [`commit`](Tx::commit). Dropped
/// without a commit, it rolls back.
pub struct Tx {
    conn: TxConn,
    open: bool,
    changes: Changes,
    /// Rows handed to [`Tx::defer`], by statement, in the order first deferred.
    deferred: Vec<Deferred>,
}

/// Rows one statement writes at the commit: their JSON texts, in order.
struct Deferred {
    sql: &'static str,
    rows: Vec<String>,
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

enum TxConn {
    /// The SQLite writer, held until the transaction ends.
    Lite(sqlite::Held),
    Pg(PoolConnection<Any>),
    /// Handed to the commit.
    Ended,
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self.conn {
            TxConn::Lite(_) => Backend::Sqlite,
            TxConn::Pg(_) => Backend::Postgres,
            // Left behind only inside a SQLite commit, which consumes the transaction.
            TxConn::Ended => Backend::Sqlite,
        }
    }

    /// PostgreSQL only: write `row` (the text of a JSON object) at the commit, with the
    /// rows deferred before it with the same `sql`: one statement, `sql` with `$1` bound
    /// to the JSON array of those rows in the order deferred, after every statement the
    /// transaction ran itself.
    ///
    /// For writes nothing reads back before the commit (the outbox): a transaction that
    /// handles a batch of events pays one round trip for all of its rows instead of one
    /// each. On SQLite a statement costs no round trip: write at once instead.
    pub fn defer(&mut self, sql: &'static str, row: String) {
        debug_assert_eq!(
            self.backend(),
            Backend::Postgres,
            "Tx::defer is for PostgreSQL"
        );
        match self.deferred.iter_mut().find(|d| d.sql == sql) {
            Some(deferred) => deferred.rows.push(row),
            None => self.deferred.push(Deferred {
                sql,
                rows: vec![row],
            }),
        }
    }

    /// Write the deferred rows (a failure leaves the transaction to roll back).
    async fn write_deferred(&mut self) -> Result<(), sqlx::Error> {
        for deferred in std::mem::take(&mut self.deferred) {
            let array = format!("[{}]", deferred.rows.join(","));
            query(deferred.sql).bind(array).execute(&mut *self).await?;
        }
        Ok(())
    }

    /// Commit; on SQLite the answer may wait for the group this transaction joined.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.write_deferred().await?;
        match &mut self.conn {
            TxConn::Lite(_) => {
                // The transaction ends in this call either way (a failed commit rolls
                // back), and the writer goes on to the next before the group's answer.
                self.open = false;
                let TxConn::Lite(writer) = std::mem::replace(&mut self.conn, TxConn::Ended) else {
                    unreachable!("matched above")
                };
                Lite::commit(writer).await?;
            }
            // Closed only once answered: a failed or cancelled commit leaves sqlx's count
            // of the transaction up, and the drop queues the rollback that resets it.
            TxConn::Pg(conn) => {
                AnyTransactionManager::commit(conn).await?;
                self.open = false;
            }
            TxConn::Ended => {}
        }
        self.changes.committed();
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            TxConn::Lite(writer) => {
                self.open = false;
                writer.rollback()
            }
            TxConn::Ended => Ok(()),
            TxConn::Pg(conn) => {
                AnyTransactionManager::rollback(conn).await?;
                self.open = false;
                Ok(())
            }
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        match &mut self.conn {
            // If even this fails, the writer's next lock rolls back or reopens.
            TxConn::Lite(writer) => drop(writer.rollback()),
            TxConn::Ended => {}
            // Queued before the connection's next use.
            TxConn::Pg(conn) => AnyTransactionManager::start_rollback(conn),
        }
    }
}

/// How often a SQLite file's write-ahead log is copied back into the database...
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// ...or sooner, after this many uses of the writer (looked at every
/// [`CHECKPOINT_LOOK`]): under heavy writes 100 ms of log is tens of megabytes.
const CHECKPOINT_WRITES: u64 = 1000;
const CHECKPOINT_LOOK: Duration = Duration::from_millis(10);

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
/// checkpoint runs. So once the log passes 16 MiB the checkpoint is finished holding the
/// writer — by then only the frames of the last few milliseconds are left — and the next
/// write transaction resets the log; `journal_size_limit` trims the file when it does.
/// (That step syncs while every writer waits, about a millisecond: doing it every round
/// instead of every 16 MiB put it in the p99.)
fn spawn_checkpointer(lite: Arc<Lite>) -> DropGuard {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_LOOK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_run = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stopped.cancelled() => return,
                _ = tick.tick() => {}
            }
            lite.flush_abandoned_group();
            // Nothing written since the last round (an idle service): nothing to do.
            let writes = lite.writes_since_checkpoint();
            if writes == 0 || (writes < CHECKPOINT_WRITES && last_run.elapsed() < CHECKPOINT_EVERY)
            {
                continue;
            }
            lite.take_writes();
            last_run = tokio::time::Instant::now();
            match lite.checkpoint().await {
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
