//! SQLite, run on the calling thread.
//!
//! A statement on a WAL file takes microseconds and, with `synchronous = NORMAL`, never
//! waits for the disk (the checkpoint, the one step that does, runs on a blocking
//! thread; with `FULL` a group commit syncs the log too, see `writer.rs`). sqlx hands
//! every statement to a thread per connection and back; profiled under load that
//! handoff was 70% of the CPU, the statements 2%. So the store keeps its own connections
//! and runs a statement where it is awaited: one writer behind an async lock
//! (transactions queue in the process instead of failing with `SQLITE_BUSY`, and those
//! that queue together commit together), and a few readers beside it. See
//! docs/decisions/0009-sqlite-on-the-calling-thread.md.
//!
//! The wing: `statement.rs` runs statements and maps SQLite's errors, `writer.rs` holds
//! the writer and its group commit, `checkpointer.rs` copies the log back,
//! `gathered_log.rs` is the VFS that writes a commit's log frames at once, `memory.rs`
//! SQLite's allocator and process-wide configuration.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

mod checkpointer;
mod gathered_log;
pub(crate) mod memory;
mod statement;
mod writer;

pub(crate) use checkpointer::spawn_checkpointer;
pub(crate) use statement::{error, execute, fetch, run_batch, LiteRow, Statement};
use writer::{Ended, Queued, Writer};

use crate::config::{sqlite_gathered_log, sqlite_synchronous};
use crate::{Error, Synchronous};

/// `temp_store = MEMORY`: a transaction of a group runs in a savepoint, and a page it
/// changes is first copied to the savepoint's journal; by default that journal spills
/// to a temporary file past 64 KiB, which a group of transactions always passed (under
/// load a tenth of the server's CPU went to writing and creating those files).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; \
     PRAGMA journal_size_limit = 16777216; PRAGMA temp_store = MEMORY;";

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
    /// Opened to read only: no writer, readers open the file read-only.
    read_only: bool,
}

impl Lite {
    pub(crate) fn open(path: &Path) -> Result<Lite, Error> {
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
                sqlite_synchronous() == Synchronous::Full,
            )))),
            queued,
            readers: SyncMutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            read_only: false,
        })
    }

    /// An existing file, to read only (`ticketing audit` beside a running system): no
    /// writer (writes fail as on a closed store), nothing changed on open.
    pub(crate) fn open_read_only(path: &Path) -> Result<Lite, Error> {
        let lite = Lite {
            reset_log_frames: 0,
            path: path.to_owned(),
            writer: Arc::new(Mutex::new(None)),
            queued: Arc::new(AtomicUsize::new(0)),
            readers: SyncMutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            read_only: true,
        };
        let reader = lite.take_reader()?;
        lite.put_reader(reader);
        Ok(lite)
    }

    /// Wait for the writer and begin a transaction on it (in the open group, if any).
    pub(crate) async fn begin(&self) -> Result<Held, Error> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let queued = Queued::enter(&self.queued);
        let waiting = std::time::Instant::now();
        let writer = self.lock().await;
        crate::metrics::writer_waited("sqlite", waiting);
        drop(queued);
        let mut writer = writer?;
        writer.begin()?;
        Ok(writer)
    }

    /// Commit the transaction `writer` holds: answered once it is committed, which for
    /// a transaction deferred to its group is after the writer went on to the next.
    pub(crate) async fn commit(mut writer: Held) -> Result<(), Error> {
        let ended = match sqlite_synchronous() {
            Synchronous::Normal => writer.commit(),
            // The group's commit syncs the log: not on the executor's threads.
            Synchronous::Full => {
                let (ended, held) = tokio::task::spawn_blocking(move || {
                    let ended = writer.commit();
                    (ended, writer)
                })
                .await?;
                writer = held;
                ended
            }
        };
        match ended? {
            Ended::Committed => Ok(()),
            Ended::Deferred(answer) => {
                drop(writer);
                match answer.await {
                    Ok(outcome) => outcome,
                    Err(_closed) => Err(Error::Closed),
                }
            }
        }
    }

    /// A write of its own (`Store::writer`): a transaction of one statement.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
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
    async fn lock(&self) -> Result<Held, Error> {
        let guard = self.writer.clone().lock_owned().await;
        let mut writer =
            OwnedMutexGuard::try_map(guard, Option::as_mut).map_err(|_closed| Error::Closed)?;
        if writer.stuck() {
            if let Err(err) = writer.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %err, "SQLite writer stuck in a transaction; reopening it");
                *writer = Writer::new(
                    connect(&self.path)?,
                    self.queued.clone(),
                    sqlite_synchronous() == Synchronous::Full,
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
        f: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut conn = self.take_reader()?;
        let result = f(&mut conn);
        self.put_reader(conn);
        result
    }

    fn take_reader(&self) -> Result<Connection, Error> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let idle = self.lock_readers().pop();
        match idle {
            Some(conn) => Ok(conn),
            None if self.read_only => connect_read_only(&self.path),
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
    pub(crate) async fn checkpoint(self: &Arc<Self>) -> Result<(), Error> {
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
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await?
}

fn connect(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // The log's frames gathered into a write per commit (`gathered_log.rs`).
    let conn = if sqlite_gathered_log() && gathered_log::install() {
        Connection::open_with_flags_and_vfs(path, flags, gathered_log::VFS)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(error)?;
    conn.execute_batch(PRAGMAS).map_err(error)?;
    let synchronous = match sqlite_synchronous() {
        Synchronous::Normal => "PRAGMA synchronous = NORMAL",
        Synchronous::Full => "PRAGMA synchronous = FULL",
    };
    conn.execute_batch(synchronous).map_err(error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    Ok(conn)
}

fn connect_read_only(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(error)?;
    conn.execute_batch("PRAGMA busy_timeout = 10000")
        .map_err(error)?;
    Ok(conn)
}

/// Checkpoint beside the writer; the frames (pages) the log held.
fn checkpoint_beside_writer(conn: &mut Connection) -> Result<i64, Error> {
    // (busy, frames in the log, frames copied); -1 frames when not in WAL mode.
    let frames: i64 = conn
        .query_row(CHECKPOINT, [], |row| row.get(1))
        .map_err(error)?;
    Ok(frames.max(0))
}
