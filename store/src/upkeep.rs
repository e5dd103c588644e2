//! Upkeep of a PostgreSQL store's tables by the service itself: a vacuum once a table
//! has many dead rows, an analyze once much of it changed, whatever the server's
//! autovacuum does.
//!
//! Autovacuum, where it runs at all (it is off on this project's test machines), looks
//! at a database once a minute. That is too slow for the tables a service churns: an
//! outbox or a delivery queue whose rows are deleted as soon as they are handled leaves
//! a dead row and dead index entries per event, gathered where every read of the
//! table starts (its oldest rows), so each read walks past more of them; at a thousand
//! events a second, within a minute its statements take several times as long. And a
//! table that grows from empty within seconds of a busy start keeps plans made for it
//! empty (sequential scans, hash joins) until it is analyzed. The thresholds are
//! autovacuum's, with smaller bases, checked every second.
//!
//! A vacuum here never truncates (`TRUNCATE false`: its empty pages are reused, never
//! handed back under an exclusive lock) and both skip a table another process is
//! already at (`SKIP_LOCKED`): the processes of one service share the work. An operator
//! whose autovacuum is tuned for these tables turns it off (`--pg-upkeep false`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{query, Backend, Store};

/// How often the tables' counts are read.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A table is vacuumed once its dead rows pass this plus its live ones divided by
/// [`VACUUM_DIVISOR`]: for a queue (few live rows) every thousand handled, for a large
/// table a fifth of it, as autovacuum does.
const VACUUM_BASE: i64 = 1000;
const VACUUM_DIVISOR: i64 = 5;

/// A table is analyzed once its rows changed since the last analyze pass this plus its
/// live ones divided by [`ANALYZE_DIVISOR`].
const ANALYZE_BASE: i64 = 1000;
const ANALYZE_DIVISOR: i64 = 10;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether the PostgreSQL stores this process opens after the call keep up their own
/// tables (the `--pg-upkeep` setting of the binary; on when not called).
pub fn set_postgres_upkeep(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Keep `store`'s tables vacuumed and analyzed until `stop`: PostgreSQL only (SQLite
/// frees a deleted row's space at once, and plans each statement from its indexes).
pub fn spawn(store: &Store, stop: CancellationToken) -> Option<JoinHandle<()>> {
    if store.backend() != Backend::Postgres || !ENABLED.load(Ordering::Relaxed) {
        return None;
    }
    let store = store.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match keep_up(&store).await {
                Ok(()) => {}
                Err(crate::Error::Closed) => return,
                Err(err) => tracing::warn!(error = %err, "vacuuming or analyzing failed"),
            }
        }
    }))
}

/// One look at the schema's tables, and what they need.
async fn keep_up(store: &Store) -> Result<(), crate::Error> {
    let tables = query(
        "SELECT quote_ident(relname) AS name, \
            n_dead_tup > $1 + n_live_tup / $2 AS vacuum, \
            n_mod_since_analyze > $3 + n_live_tup / $4 AS analyze \
         FROM pg_stat_user_tables WHERE schemaname = current_schema() \
         AND (n_dead_tup > $1 + n_live_tup / $2 OR n_mod_since_analyze > $3 + n_live_tup / $4)",
    )
    .bind(VACUUM_BASE)
    .bind(VACUUM_DIVISOR)
    .bind(ANALYZE_BASE)
    .bind(ANALYZE_DIVISOR)
    .fetch_all(store.reader())
    .await?;
    for table in tables {
        let name: String = table.get("name")?;
        let (vacuum, analyze): (bool, bool) = (table.get("vacuum")?, table.get("analyze")?);
        let statement = match (vacuum, analyze) {
            (true, true) => "VACUUM (SKIP_LOCKED, TRUNCATE false, ANALYZE)",
            (true, false) => "VACUUM (SKIP_LOCKED, TRUNCATE false)",
            (false, true) => "ANALYZE (SKIP_LOCKED)",
            (false, false) => continue,
        };
        let started = std::time::Instant::now();
        // `name` is a table of this schema, quoted by the server.
        query(&format!("{statement} {name}"))
            .persistent(false)
            .execute(store.writer())
            .await?;
        tracing::debug!(table = %name, statement, took = ?started.elapsed(), "upkeep");
    }
    Ok(())
}
