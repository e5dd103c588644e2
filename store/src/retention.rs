//! Retention: tables that only grow (the in-process log, inbox marks, the memory of
//! finished orders) are pruned on a schedule, a bounded batch per statement so that the
//! writer is never held for long.

use std::future::Future;
use std::time::Duration;

use ticketing_contracts::time::now_millis;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{query, Query, Store};

/// How often retention is applied; the first time a minute after start, out of the way
/// of start-up.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_FIRST: Duration = Duration::from_secs(60);

/// Apply a retention (`prune`, returning the records it deleted) every [`PRUNE_EVERY`]
/// until `stop`.
pub fn spawn_pruner<F, Fut>(what: &'static str, stop: CancellationToken, prune: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, crate::Error>> + Send,
{
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + PRUNE_FIRST;
        let mut tick = tokio::time::interval_at(first, PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match prune().await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, what, "old records deleted"),
                Err(crate::Error::Closed) => return,
                Err(err) => tracing::warn!(error = %err, what, "pruning failed"),
            }
        }
    })
}

/// Rows deleted per statement when pruning: a few milliseconds of the writer each.
pub const PRUNE_BATCH: i64 = 1000;

/// Run `delete` (a statement that deletes at most [`PRUNE_BATCH`] rows) until it deletes
/// fewer, letting what queued for the writer go between statements; the rows deleted.
pub async fn delete_in_batches<'q>(
    store: &Store,
    delete: impl Fn() -> Query<'q>,
) -> Result<u64, crate::Error> {
    let mut total = 0;
    loop {
        tokio::task::yield_now().await;
        let deleted = delete().execute(store.writer()).await?;
        total += deleted;
        if deleted < PRUNE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Delete the rows of `table` whose `column` (milliseconds since the epoch) is older
/// than `age` before now, in batches; the rows deleted. `key` names the rows: the
/// primary key's column, or its columns separated by commas (`"scope, key"`). `table`,
/// `column` and `key` are the caller's constants, never input.
pub async fn prune_older_than(
    store: &Store,
    table: &'static str,
    column: &'static str,
    key: &'static str,
    age: Duration,
) -> Result<u64, crate::Error> {
    let before = now_millis() - age.as_millis() as i64;
    let sql = format!(
        "DELETE FROM {table} WHERE ({key}) IN \
         (SELECT {key} FROM {table} WHERE {column} < $1 LIMIT $2)"
    );
    delete_in_batches(store, || query(&sql).bind(before).bind(PRUNE_BATCH)).await
}

/// Keep `table` pruned of rows older than `age` (by `column`, deleted by `key`: see
/// [`prune_older_than`]) until `stop`.
pub fn spawn_table_pruner(
    store: Store,
    table: &'static str,
    column: &'static str,
    key: &'static str,
    age: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    spawn_pruner(table, stop, move || {
        let store = store.clone();
        async move { prune_older_than(&store, table, column, key, age).await }
    })
}
