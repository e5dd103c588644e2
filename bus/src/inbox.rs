//! Idempotent consumers: the "processed" mark of an event and the handler's effects
//! commit in one transaction, so a redelivered event is acknowledged without effect.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::RETENTION;
use crate::envelope::Envelope;
use ticketing_contracts::time::now_millis;
use ticketing_store::retention;
use ticketing_store::{query, Backend, Store, Tx};

/// Begin the transaction that handles `event` for consumer `group`, with the
/// "processed" mark already written in it; None when the event was already handled.
///
/// On PostgreSQL a concurrent duplicate blocks on the mark's primary key until the
/// first transaction ends: it then sees the mark (None) or, if the first rolled back,
/// takes over. On SQLite writes are serialised by the store's single writer.
pub async fn begin(
    store: &Store,
    group: &str,
    event: &Envelope,
) -> Result<Option<Tx>, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    if !mark(&mut tx, group, event).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    Ok(Some(tx))
}

/// Write the "processed" mark of `event` for `group` in `tx`; false when it was there
/// already (the event was handled before).
pub async fn mark(
    tx: &mut Tx,
    group: &str,
    event: &Envelope,
) -> Result<bool, ticketing_store::Error> {
    let inserted = query(
        "INSERT INTO inbox (consumer_group, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(&event.id)
    .bind(now_millis())
    .execute(tx)
    .await?;
    Ok(inserted > 0)
}

/// Write the "processed" marks of `events` (a batch sharing `tx`) for `group`; for each
/// event, whether its mark is new (false when it was handled before, or repeats an
/// earlier event of the batch).
///
/// On PostgreSQL the batch's marks are one statement: the ids travel as one JSON array,
/// so the statement's text (and its prepared plan) is the same for any batch size, and a
/// batch pays one round trip instead of one per event. On SQLite a statement costs no
/// round trip, and the single-row statement stays cached.
pub async fn mark_all(
    tx: &mut Tx,
    group: &str,
    events: &[&Envelope],
) -> Result<Vec<bool>, ticketing_store::Error> {
    if tx.backend() == Backend::Sqlite || events.len() < 2 {
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            fresh.push(mark(tx, group, event).await?);
        }
        return Ok(fresh);
    }
    let inserted: Vec<String> = query(
        "INSERT INTO inbox (consumer_group, event_id, processed_at) \
         SELECT $1, value, $3 FROM json_array_elements_text($2::json) \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(group)
    .bind(ids_json(events)?)
    .bind(now_millis())
    .scalars(tx)
    .await?;
    let mut inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
    // `remove`: an id the batch holds twice is new only the first time.
    Ok(events
        .iter()
        .map(|event| inserted.remove(&event.id))
        .collect())
}

/// [`handled`] for a batch of events: on PostgreSQL one statement (the ids as one JSON
/// array, as in [`mark_all`]).
///
/// Each id is looked up on its own (a `LATERAL` subquery with `LIMIT 1` cannot be turned
/// into a join), so the whole primary key is the index condition of every lookup,
/// whatever the planner believes of the table. Written as a set (`IN`, `= ANY`), a plan
/// made while the inbox looked almost empty (a new database, no statistics yet) read
/// every mark of the group and filtered: 2–18 ms per batch at a few thousand marks
/// (auto_explain, the system bench), against 0.3 ms.
pub async fn handled_all(
    store: &Store,
    group: &str,
    events: &[&Envelope],
) -> Result<Vec<bool>, ticketing_store::Error> {
    if store.backend() == Backend::Sqlite || events.len() < 2 {
        let mut handled = Vec::with_capacity(events.len());
        for event in events {
            handled.push(self::handled(store, group, event).await?);
        }
        return Ok(handled);
    }
    let found: std::collections::HashSet<String> = query(
        "SELECT found.event_id FROM json_array_elements_text($2::json) AS batch(id) \
         CROSS JOIN LATERAL (SELECT event_id FROM inbox \
         WHERE consumer_group = $1 AND event_id = batch.id LIMIT 1) AS found",
    )
    .bind(group)
    .bind(ids_json(events)?)
    .scalars(store.reader())
    .await?
    .into_iter()
    .collect();
    Ok(events
        .iter()
        .map(|event| found.contains(&event.id))
        .collect())
}

/// The events' ids as one JSON array: a statement whose text is the same for any batch.
fn ids_json(events: &[&Envelope]) -> Result<String, ticketing_store::Error> {
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    serde_json::to_string(&ids).map_err(ticketing_store::Error::other)
}

/// Has consumer `group` handled `event` already? For listeners with effects outside
/// the store's transactions, which must be skipped for a redelivered event.
pub async fn handled(
    store: &Store,
    group: &str,
    event: &Envelope,
) -> Result<bool, ticketing_store::Error> {
    Ok(
        query("SELECT 1 FROM inbox WHERE consumer_group = $1 AND event_id = $2")
            .bind(group)
            .bind(&event.id)
            .fetch_optional(store.reader())
            .await?
            .is_some(),
    )
}

/// Marks are kept longer than a bus keeps an event ([`RETENTION`]): an event can only be
/// redelivered while its bus still holds it.
pub const KEEP: Duration = Duration::from_secs(RETENTION.as_secs() + 24 * 3600);

/// The marks' retention: (table, time column, key).
const MARKS: (&str, &str, &str) = ("inbox", "processed_at", "consumer_group, event_id");

/// Forget marks older than `age_millis`, a batch per statement so that the writer is
/// never held for long.
pub async fn prune(store: &Store, age_millis: i64) -> Result<u64, ticketing_store::Error> {
    let (table, column, key) = MARKS;
    let age = Duration::from_millis(u64::try_from(age_millis).unwrap_or(0));
    retention::prune_older_than(store, table, column, key, age).await
}

/// Prune marks older than [`KEEP`] every hour until `shutdown`.
pub fn spawn_pruner(store: Store, shutdown: CancellationToken) -> JoinHandle<()> {
    let (table, column, key) = MARKS;
    retention::spawn_table_pruner(store, table, column, key, KEEP, shutdown)
}
