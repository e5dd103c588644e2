//! The SQLite writer connection and its group commit.
//!
//! Every write transaction of a SQLite store runs on one connection, one at a time.
//! Committing each separately appends every page it touched to the log (and, with
//! `synchronous = FULL`, syncs it): two orders placed back to back write the same
//! table and index pages twice. So transactions that queue for the writer share one
//! database transaction instead:
//!
//! - the first opens it (`BEGIN IMMEDIATE`); each transaction of the group runs inside a
//!   savepoint of its own, so a failure rolls back that transaction alone;
//! - a transaction that ends while others wait for the writer releases its savepoint
//!   and hands the writer on *without* committing; its caller waits for the group's
//!   commit;
//! - the transaction that ends with nobody waiting (or that fills the group) commits
//!   the group, and every caller in it is answered with that commit's result.
//!
//! Each transaction stays atomic (its savepoint is all or nothing) and none is answered
//! before its changes are committed; a failed group commit fails every member. Readers
//! (other connections) see a group's changes when it commits, never a part of it.
//!
//! A group is bounded by count ([`MAX_GROUP`]) and by size: once its changes no longer
//! fit the page cache (SQLite began spilling pages to the log), it commits with the
//! transaction that made it spill. With `synchronous = FULL` a commit waits for the
//! disk, so whichever path commits a group does it off the executor's threads.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rusqlite::{ffi, Connection};
use tokio::sync::oneshot;

use super::run_batch;
use crate::Error;

/// Transactions committed together at most: bounds the wait of the group's first one.
pub(crate) const MAX_GROUP: usize = 64;

/// What a member of a group is answered: the group commit's outcome.
pub(crate) type Outcome = Result<(), Error>;

/// The writer connection, and the group transaction it may have open.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    /// Callers of `begin` waiting for the writer (shared with the store).
    queued: Arc<AtomicUsize>,
    /// The open group transaction, if any.
    group: Option<Group>,
    /// The connection syncs at commit (`synchronous = FULL`).
    syncs: bool,
}

/// Transactions that ended inside the open group transaction, waiting for its commit.
#[derive(Debug, Default)]
struct Group {
    waiting: Vec<oneshot::Sender<Outcome>>,
}

/// How a transaction's commit went on the writer.
pub(crate) enum Ended {
    /// Committed (with its group).
    Committed,
    /// In the group: answered when the group commits, after the writer is handed on.
    Deferred(oneshot::Receiver<Outcome>),
}

impl Writer {
    pub(crate) fn new(conn: Connection, queued: Arc<AtomicUsize>, syncs: bool) -> Writer {
        Writer {
            conn,
            queued,
            group: None,
            syncs,
        }
    }

    /// Is the connection in a transaction nobody will finish (a commit that failed and
    /// whose rollback failed too)? A group waiting for its commit is not that.
    pub(crate) fn stuck(&self) -> bool {
        self.group.is_none() && !self.conn.is_autocommit()
    }

    /// Start a transaction: join the open group, or open one.
    pub(crate) fn begin(&mut self) -> Result<(), Error> {
        if self.group.is_some() && self.conn.is_autocommit() {
            // SQLite rolled the group back on its own (I/O error, disk full).
            self.fail_group(&lost());
        }
        if self.group.is_none() {
            run_batch(&mut self.conn, "BEGIN IMMEDIATE")?;
            spilled_since(&self.conn, true);
            self.group = Some(Group::default());
        }
        if let Err(err) = run_batch(&mut self.conn, "SAVEPOINT tx") {
            self.settle();
            return Err(err);
        }
        Ok(())
    }

    /// Can the transaction in progress still run statements? After an error that made
    /// SQLite roll back the whole transaction, it cannot: a statement would run on its
    /// own, outside any transaction.
    pub(crate) fn check_open(&mut self) -> Result<(), Error> {
        if self.conn.is_autocommit() {
            if self.group.is_some() {
                self.fail_group(&lost());
            }
            return Err(lost());
        }
        Ok(())
    }

    /// End the transaction in progress with a commit.
    pub(crate) fn commit(&mut self) -> Result<Ended, Error> {
        self.check_open()?;
        if deferred_foreign_key_violations(&self.conn) {
            // A deferred constraint is checked at the group's commit, which would fail
            // every member for this one: check this transaction's alone now.
            let _ = self.rollback();
            return Err(Error::ForeignKey {
                constraint: "deferred".into(),
            });
        }
        if let Err(err) = run_batch(&mut self.conn, "RELEASE tx") {
            let _ = self.rollback();
            return Err(err);
        }
        let Some(group) = self.group.as_mut() else {
            // Not reachable (a transaction runs in a group); refused rather than panic.
            return Err(lost());
        };
        if self.queued.load(Ordering::Acquire) > 0
            && group.waiting.len() + 1 < MAX_GROUP
            && !spilled_since(&self.conn, false)
        {
            let (answer, answered) = oneshot::channel();
            group.waiting.push(answer);
            return Ok(Ended::Deferred(answered));
        }
        self.commit_group().map(|()| Ended::Committed)
    }

    /// End the transaction in progress with a rollback: its changes alone are undone.
    pub(crate) fn rollback(&mut self) -> Result<(), Error> {
        if self.conn.is_autocommit() {
            if self.group.is_some() {
                self.fail_group(&lost());
            }
            return Ok(());
        }
        match run_batch(&mut self.conn, "ROLLBACK TO tx; RELEASE tx") {
            Ok(()) => {
                self.settle();
                Ok(())
            }
            Err(err) => {
                self.fail_group(&err);
                Err(err)
            }
        }
    }

    /// Between transactions: commit the group when nobody is queued to join it (or
    /// it is empty: then there is nothing to keep).
    pub(crate) fn settle(&mut self) {
        let Some(group) = &self.group else { return };
        if group.waiting.is_empty() {
            let _ = run_batch(&mut self.conn, "ROLLBACK");
            self.group = None;
        } else if self.queued.load(Ordering::Acquire) == 0 {
            let _ = self.commit_group();
        }
    }

    /// Between transactions: commit the group whoever waits (the writer is about to be
    /// used outside transactions, or a group was left by callers that went away).
    pub(crate) fn flush(&mut self) {
        if self.group.is_some() {
            let _ = self.commit_group();
        }
    }

    fn commit_group(&mut self) -> Result<(), Error> {
        let group = self.group.take().unwrap_or_default();
        let committed = if self.syncs {
            may_block(|| run_batch(&mut self.conn, "COMMIT"))
        } else {
            run_batch(&mut self.conn, "COMMIT")
        };
        if committed.is_err() && !self.conn.is_autocommit() {
            let _ = run_batch(&mut self.conn, "ROLLBACK");
        }
        let outcome = committed.clone();
        for member in group.waiting {
            // A member whose caller went away: its changes are committed all the same.
            let _ = member.send(outcome.clone());
        }
        committed
    }

    /// The group transaction is gone (rolled back): tell every waiting member.
    fn fail_group(&mut self, why: &Error) {
        if let Some(group) = self.group.take() {
            if !self.conn.is_autocommit() {
                let _ = run_batch(&mut self.conn, "ROLLBACK");
            }
            for member in group.waiting {
                let _ = member.send(Err(why.clone()));
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing: what the group holds was promised to its members.
        self.flush();
    }
}

/// Callers of `begin` waiting for the writer, counted while they wait.
pub(crate) struct Queued(Arc<AtomicUsize>);

impl Queued {
    pub(crate) fn enter(count: &Arc<AtomicUsize>) -> Queued {
        count.fetch_add(1, Ordering::AcqRel);
        Queued(count.clone())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lost() -> Error {
    Error::other("the transaction was rolled back after an earlier error")
}

/// Run `f`, which waits for the disk, without holding up the tasks of the executor
/// thread it is called on (the executor hands that thread's other tasks to another).
/// On a blocking thread, or a single-threaded runtime (tests), it runs as is.
fn may_block<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Has the open transaction spilled pages from the page cache to the log (since the
/// last call with `reset`)? Then it has outgrown the cache.
fn spilled_since(conn: &Connection, reset: bool) -> bool {
    counted(conn, ffi::SQLITE_DBSTATUS_CACHE_SPILL, reset)
}

/// Does the open transaction hold foreign key violations whose check was deferred to
/// its commit?
fn deferred_foreign_key_violations(conn: &Connection) -> bool {
    counted(conn, ffi::SQLITE_DBSTATUS_DEFERRED_FKS, false)
}

/// Is the connection's counter `status` (`sqlite3_db_status`) above zero? With `reset`
/// it starts again from zero.
fn counted(conn: &Connection, status: c_int, reset: bool) -> bool {
    let (mut current, mut highest) = (0, 0);
    // SAFETY: the handle is valid while `conn` is borrowed, and this call only reads
    // (and with `reset`, zeroes) a counter of the connection into the two integers
    // given.
    let rc = unsafe {
        ffi::sqlite3_db_status(
            conn.handle(),
            status,
            &mut current,
            &mut highest,
            c_int::from(reset),
        )
    };
    rc == ffi::SQLITE_OK && current > 0
}
