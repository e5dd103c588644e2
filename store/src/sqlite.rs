//! SQLite, run on the calling thread.
//!
//! A statement on a WAL file takes microseconds and, with `synchronous = NORMAL`, never
//! waits for the disk (the checkpoint, the one step that does, runs on a blocking
//! thread; with `FULL` a group commit syncs the log too, see `writer.rs`). sqlx hands every statement to a thread per connection and back; profiled
//! under load that handoff was 70% of the CPU, the statements 2%. So the store keeps its
//! own connections and runs a statement where it is awaited: one writer behind an async
//! lock (transactions queue in the process instead of failing with `SQLITE_BUSY`, and
//! those that queue together commit together), and a few readers beside it. See docs/decisions/0009-sqlite-on-the-calling-thread.md.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use rusqlite::{ffi, Connection, OpenFlags};
use sqlx::error::{DatabaseError, ErrorKind};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::value::Value;
use crate::writer::{Ended, Queued, Writer};
use crate::Synchronous;

/// `temp_store = MEMORY`: a transaction of a group runs in a savepoint, and a page it
/// changes is first copied to the savepoint's journal; by default that journal spills
/// to a temporary file past 64 KiB, which a group of transactions always passed (under
/// load a tenth of the server's CPU went to writing and creating those files).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; \
     PRAGMA journal_size_limit = 16777216; PRAGMA temp_store = MEMORY;";

/// The process's choice of [`Synchronous`] for the files it opens (an operator's
/// setting, like the allocator: see [`crate::set_sqlite_synchronous`]).
static SYNCHRONOUS: AtomicU8 = AtomicU8::new(Synchronous::Normal as u8);

pub(crate) fn set_synchronous(mode: Synchronous) {
    SYNCHRONOUS.store(mode as u8, Ordering::Relaxed);
}

/// Whether connections open on the gathered-log VFS (`--sqlite-gathered-log`).
static GATHERED_LOG: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_gathered_log(on: bool) {
    GATHERED_LOG.store(on, Ordering::Relaxed);
}

pub(crate) fn synchronous() -> Synchronous {
    if SYNCHRONOUS.load(Ordering::Relaxed) == Synchronous::Full as u8 {
        Synchronous::Full
    } else {
        Synchronous::Normal
    }
}

/// Idle readers kept open.
const READERS: usize = 4;
/// Prepared statements kept per connection.
const STATEMENTS: usize = 64;

const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";
/// Finish a checkpoint holding the writer (so the log starts over) only once the log is
/// this large: that step stalls every writer for a millisecond or so (it syncs).
const RESET_LOG_AT: i64 = 16 << 20;

/// The writer, locked.
pub(crate) type Held = OwnedMappedMutexGuard<Option<Writer>, Writer>;

/// One SQLite file's connections.
#[derive(Debug)]
pub(crate) struct Lite {
    path: PathBuf,
    /// `None` once closed.
    writer: Arc<Mutex<Option<Writer>>>,
    /// Callers of [`begin`](Self::begin) waiting for the writer: a transaction that
    /// ends while some do leaves the commit to the group (see `writer.rs`).
    queued: Arc<AtomicUsize>,
    readers: SyncMutex<Vec<Connection>>,
    closed: AtomicBool,
    /// [`RESET_LOG_AT`] in log frames (pages) of this file.
    reset_log_frames: i64,
    /// Uses of the writer since the checkpointer last looked.
    writes: AtomicU64,
}

impl Lite {
    pub(crate) fn open(path: &Path) -> Result<Lite, sqlx::Error> {
        let writer = connect(path)?;
        let page_size: i64 = writer
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(error)?;
        let queued = Arc::new(AtomicUsize::new(0));
        Ok(Lite {
            reset_log_frames: RESET_LOG_AT / page_size.max(1),
            path: path.to_owned(),
            writer: Arc::new(Mutex::new(Some(Writer::new(
                writer,
                queued.clone(),
                synchronous() == Synchronous::Full,
            )))),
            queued,
            readers: SyncMutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            writes: AtomicU64::new(0),
        })
    }

    /// Wait for the writer and begin a transaction on it (in the open group, if any).
    pub(crate) async fn begin(&self) -> Result<Held, sqlx::Error> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let queued = Queued::enter(&self.queued);
        let waiting = std::time::Instant::now();
        let writer = self.lock().await;
        crate::writer_waited("sqlite", waiting);
        drop(queued);
        let mut writer = writer?;
        writer.begin()?;
        Ok(writer)
    }

    /// Commit the transaction `writer` holds: answered once it is committed, which for
    /// a transaction deferred to its group is after the writer went on to the next.
    pub(crate) async fn commit(mut writer: Held) -> Result<(), sqlx::Error> {
        let ended = match synchronous() {
            Synchronous::Normal => writer.commit(),
            // The group's commit syncs the log: not on the executor's threads.
            Synchronous::Full => {
                let (ended, held) = tokio::task::spawn_blocking(move || {
                    let ended = writer.commit();
                    (ended, writer)
                })
                .await
                .map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))?;
                writer = held;
                ended
            }
        };
        match ended? {
            Ended::Committed => Ok(()),
            Ended::Deferred(answer) => {
                drop(writer);
                match answer.await {
                    Ok(outcome) => outcome.map_err(Into::into),
                    Err(_closed) => Err(sqlx::Error::PoolClosed),
                }
            }
        }
    }

    /// A write of its own (`Store::writer`): a transaction of one statement.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut writer = self.begin().await?;
        match f(&mut writer.conn) {
            Ok(done) => {
                Self::commit(writer).await?;
                Ok(done)
            }
            Err(err) => {
                let _ = writer.rollback();
                Err(err)
            }
        }
    }

    /// Wait for the writer, and hand it out clean: a transaction left open (a commit
    /// that failed and whose rollback failed too: disk full, I/O error) is rolled back,
    /// and a connection that cannot even do that is replaced.
    async fn lock(&self) -> Result<Held, sqlx::Error> {
        let guard = self.writer.clone().lock_owned().await;
        let mut writer = OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_closed| sqlx::Error::PoolClosed)?;
        if writer.stuck() {
            if let Err(err) = writer.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %err, "SQLite writer stuck in a transaction; reopening it");
                *writer = Writer::new(
                    connect(&self.path)?,
                    self.queued.clone(),
                    synchronous() == Synchronous::Full,
                );
            }
        }
        Ok(writer)
    }

    /// Commit a group whose members' successors went away before taking the writer
    /// (their callers cancelled): nobody else would until the next write.
    pub(crate) fn flush_abandoned_group(&self) {
        if let Ok(mut writer) = self.writer.try_lock() {
            if let Some(writer) = writer.as_mut() {
                writer.flush();
            }
        }
    }

    /// Run `f` on a reader (one is opened when all are taken).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut conn = self.take_reader()?;
        let result = f(&mut conn);
        self.put_reader(conn);
        result
    }

    fn take_reader(&self) -> Result<Connection, sqlx::Error> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(sqlx::Error::PoolClosed);
        }
        let idle = self.lock_readers().pop();
        match idle {
            Some(conn) => Ok(conn),
            None => connect(&self.path),
        }
    }

    fn put_reader(&self, conn: Connection) {
        let mut readers = self.lock_readers();
        if readers.len() < READERS {
            readers.push(conn);
        }
    }

    fn lock_readers(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // The list stays valid whatever a panicking holder did to it.
        self.readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn writes_since_checkpoint(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// The checkpointer takes the count when it starts a round.
    pub(crate) fn take_writes(&self) {
        self.writes.store(0, Ordering::Relaxed);
    }

    /// Copy the log back into the database: on a reader beside the writer, then, once
    /// the log passes [`RESET_LOG_AT`], holding the writer, so the next write transaction
    /// can start the log over (see `spawn_checkpointer`). Both on a blocking thread: a
    /// checkpoint waits for the disk.
    pub(crate) async fn checkpoint(self: &Arc<Self>) -> Result<(), sqlx::Error> {
        let lite = self.clone();
        let frames = blocking(move || lite.read(checkpoint_beside_writer)).await?;
        if frames < self.reset_log_frames {
            return Ok(());
        }
        let mut writer = self.lock().await?;
        writer.flush();
        blocking(move || run_batch(&mut writer.conn, CHECKPOINT)).await
    }

    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.writer.lock().await.take();
        self.lock_readers().clear();
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, sqlx::Error> + Send + 'static,
) -> Result<T, sqlx::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| sqlx::Error::Io(std::io::Error::other(err)))?
}

fn connect(path: &Path) -> Result<Connection, sqlx::Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // The log's frames gathered into a write per commit (`sqlite_wal_writes.rs`).
    let conn = if GATHERED_LOG.load(Ordering::Relaxed) && crate::sqlite_wal_writes::install() {
        Connection::open_with_flags_and_vfs(path, flags, crate::sqlite_wal_writes::VFS)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(error)?;
    conn.execute_batch(PRAGMAS).map_err(error)?;
    let synchronous = match synchronous() {
        Synchronous::Normal => "PRAGMA synchronous = NORMAL",
        Synchronous::Full => "PRAGMA synchronous = FULL",
    };
    conn.execute_batch(synchronous).map_err(error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    Ok(conn)
}

/// Checkpoint beside the writer; the frames (pages) the log held.
fn checkpoint_beside_writer(conn: &mut Connection) -> Result<i64, sqlx::Error> {
    // (busy, frames in the log, frames copied); -1 frames when not in WAL mode.
    let frames: i64 = conn
        .query_row(CHECKPOINT, [], |row| row.get(1))
        .map_err(error)?;
    Ok(frames.max(0))
}

/// A statement and its arguments, as [`crate::Query`] hands them over.
#[derive(Clone, Copy)]
pub(crate) struct Statement<'a> {
    pub sql: &'a str,
    pub args: &'a [Value],
    /// Keep the prepared statement in the connection's cache.
    pub persistent: bool,
}

/// Run fixed statements (transaction control: `BEGIN`, `SAVEPOINT`, `COMMIT`, …),
/// separated by `;`, each from the connection's statement cache: parsed afresh on every
/// transaction they were a few percent of the CPU under load.
pub(crate) fn run_batch(conn: &mut Connection, sql: &str) -> Result<(), sqlx::Error> {
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let mut statement = conn.prepare_cached(statement).map_err(error)?;
        let mut rows = statement.raw_query();
        while rows.next().map_err(error)?.is_some() {}
    }
    Ok(())
}

/// Run a statement to its end; the rows it changed (0 for one that changes none:
/// `changes()` alone would still count the connection's previous statement).
pub(crate) fn execute(conn: &mut Connection, query: Statement<'_>) -> Result<u64, sqlx::Error> {
    let before = conn.total_changes();
    with_statement(conn, query, |stmt| {
        let mut rows = stmt.raw_query();
        while rows.next()?.is_some() {}
        Ok(())
    })?;
    Ok(conn.total_changes() - before)
}

/// Up to `limit` rows of a statement.
pub(crate) fn fetch(
    conn: &mut Connection,
    query: Statement<'_>,
    limit: usize,
) -> Result<Vec<LiteRow>, sqlx::Error> {
    with_statement(conn, query, |stmt| {
        let columns: Arc<[String]> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let width = columns.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let values = (0..width)
                .map(|i| row.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(LiteRow {
                columns: columns.clone(),
                values,
            });
        }
        Ok(out)
    })
}

fn with_statement<T>(
    conn: &Connection,
    query: Statement<'_>,
    f: impl FnOnce(&mut rusqlite::Statement<'_>) -> rusqlite::Result<T>,
) -> Result<T, sqlx::Error> {
    let run = |stmt: &mut rusqlite::Statement<'_>| -> rusqlite::Result<T> {
        let args = query.args;
        // `$n` is a named parameter to SQLite, numbered in order of first appearance:
        // read each one's name rather than look names up (a scan per lookup, quadratic
        // in a multi-row insert).
        for index in 1..=stmt.parameter_count() {
            let name = stmt.parameter_name(index).unwrap_or("?");
            let arg = name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| args.get(n.checked_sub(1)?))
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?;
            match arg {
                Value::Int(v) => stmt.raw_bind_parameter(index, v)?,
                Value::Text(v) => stmt.raw_bind_parameter(index, v)?,
                Value::Blob(v) => stmt.raw_bind_parameter(index, v)?,
            }
        }
        f(stmt)
    };
    if query.persistent {
        let mut stmt = conn.prepare_cached(query.sql).map_err(error)?;
        run(&mut stmt).map_err(error)
    } else {
        run(&mut conn.prepare(query.sql).map_err(error)?).map_err(error)
    }
}

/// A row read from SQLite.
pub(crate) struct LiteRow {
    columns: Arc<[String]>,
    values: Vec<rusqlite::types::Value>,
}

impl LiteRow {
    pub(crate) fn value(&self, column: &str) -> Result<&rusqlite::types::Value, sqlx::Error> {
        let index = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_owned()))?;
        Ok(&self.values[index])
    }

    pub(crate) fn value_at(&self, index: usize) -> Result<&rusqlite::types::Value, sqlx::Error> {
        self.values
            .get(index)
            .ok_or(sqlx::Error::ColumnIndexOutOfBounds {
                index,
                len: self.values.len(),
            })
    }
}

/// SQLite's errors as sqlx's, so that callers handle one error type whatever the engine
/// (constraint violations keep their kind: the services map them to 4xx).
pub(crate) fn error(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteError {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SqliteError {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLite code {})", self.message, self.code)
    }
}

impl std::error::Error for SqliteError {}

impl DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}
