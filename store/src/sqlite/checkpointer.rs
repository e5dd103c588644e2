//! The checkpointer of a SQLite file.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use super::Lite;
use crate::Error;

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
pub(crate) fn spawn_checkpointer(lite: Arc<Lite>) -> DropGuard {
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
                Err(Error::Closed) => return,
                Err(err) => tracing::warn!(error = %err, "SQLite checkpoint failed"),
            }
        }
    });
    stop.drop_guard()
}
