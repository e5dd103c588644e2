//! A write transaction on either engine.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Backend;
use crate::engine::{Changes, TxConn};
use crate::error::Error;
use crate::query::{query, On};
use crate::sqlite::Lite;

/// A write transaction: run queries on `&mut tx`, then [`commit`](Tx::commit). Dropped
/// without a commit, it rolls back.
pub struct Tx {
    conn: TxConn,
    open: bool,
    changes: Changes,
    /// The store's commit signal, and whether this transaction fires it.
    signal: Arc<Notify>,
    signals: bool,
    /// Rows handed to [`Tx::defer`], by statement, in the order first deferred.
    deferred: Vec<Deferred>,
}

/// Rows one statement writes at the commit: their JSON texts, in order.
struct Deferred {
    sql: &'static str,
    rows: Vec<String>,
}

impl Tx {
    pub(crate) fn new(conn: TxConn, changes: Changes, signal: Arc<Notify>) -> Tx {
        Tx {
            conn,
            open: true,
            changes,
            signal,
            signals: false,
            deferred: Vec::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.conn {
            TxConn::Lite(_) => Backend::Sqlite,
            TxConn::Pg(_) => Backend::Postgres,
            // Left behind only inside a SQLite commit, which consumes the transaction.
            TxConn::Ended => Backend::Sqlite,
        }
    }

    /// Fire the store's commit signal (`Store::commit_signal`) once this
    /// transaction commits (the outbox marks a transaction that enqueued events, so
    /// no caller has to remember to wake the relay).
    pub fn signal_on_commit(&mut self) {
        self.signals = true;
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

    /// Write the deferred rows now, not at the commit (a failure leaves the transaction
    /// to roll back): for a transaction whose last statements hold a hot row's lock, so
    /// that only the commit follows them.
    pub async fn write_deferred(&mut self) -> Result<(), Error> {
        for deferred in std::mem::take(&mut self.deferred) {
            let array = format!("[{}]", deferred.rows.join(","));
            query(deferred.sql).bind(array).execute(&mut *self).await?;
        }
        Ok(())
    }

    /// Commit; on SQLite the answer may wait for the group this transaction joined.
    pub async fn commit(mut self) -> Result<(), Error> {
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
            // A failed or cancelled commit leaves the rollback to the drop.
            TxConn::Pg(conn) => {
                conn.commit().await?;
                self.open = false;
            }
            TxConn::Ended => {}
        }
        self.changes.committed();
        if self.signals {
            // notify_one keeps a permit when the waiter is busy: no wake-up is lost.
            self.signal.notify_one();
        }
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), Error> {
        match &mut self.conn {
            TxConn::Lite(writer) => {
                self.open = false;
                writer.rollback()
            }
            TxConn::Ended => Ok(()),
            TxConn::Pg(conn) => {
                conn.rollback().await?;
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
            // A PostgreSQL transaction queues its own rollback when dropped.
            TxConn::Pg(_) | TxConn::Ended => {}
        }
    }
}

impl<'a> From<&'a mut Tx> for On<'a> {
    fn from(tx: &'a mut Tx) -> On<'a> {
        On::tx(&mut tx.conn)
    }
}
