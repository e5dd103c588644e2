//! The tables every event-using service keeps in its own database: the transactional
//! outbox (events committed with the change that caused them, waiting to be relayed to
//! the bus) and the inbox (events a consumer group already handled, for idempotence).
//!
//! Created idempotently at start-up rather than through each service's migrations, so a
//! service only has to call [`install`] after `Store::open`.

use crate::store::{query, Backend, Store};

const SQLITE: &[&str] = &[
    // AUTOINCREMENT: an emptied table never hands out an old sequence number again.
    // `sent_at` is no longer written (rows are deleted once published).
    "CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        payload BLOB NOT NULL,
        traceparent TEXT,
        tracestate TEXT,
        produced_at BIGINT NOT NULL,
        sent_at BIGINT
    )",
    // Before published rows were deleted they were marked and kept for a while.
    "DROP INDEX IF EXISTS outbox_unsent",
    "DROP INDEX IF EXISTS outbox_sent_at",
    "DELETE FROM outbox WHERE sent_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS inbox (
        consumer_group TEXT NOT NULL,
        event_id TEXT NOT NULL,
        processed_at BIGINT NOT NULL,
        PRIMARY KEY (consumer_group, event_id)
    )",
    "CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at)",
];

const POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS outbox (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        payload BYTEA NOT NULL,
        traceparent TEXT,
        tracestate TEXT,
        produced_at BIGINT NOT NULL,
        sent_at BIGINT
    )",
    // Before published rows were deleted they were marked and kept for a while.
    "DROP INDEX IF EXISTS outbox_unsent",
    "DROP INDEX IF EXISTS outbox_sent_at",
    "DELETE FROM outbox WHERE sent_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS inbox (
        consumer_group TEXT NOT NULL,
        event_id TEXT NOT NULL,
        processed_at BIGINT NOT NULL,
        PRIMARY KEY (consumer_group, event_id)
    )",
    "CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at)",
];

/// Create the `outbox` and `inbox` tables when missing.
pub async fn install(store: &Store) -> anyhow::Result<()> {
    let statements = match store.backend() {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut tx = store.begin().await?;
    if store.backend() == Backend::Postgres {
        // Replicas starting together would otherwise race on CREATE TABLE IF NOT EXISTS
        // (it is not atomic against a concurrent create in PostgreSQL).
        query("SELECT pg_advisory_xact_lock(7301000000000001)")
            .execute(&mut tx)
            .await?;
    }
    for statement in statements {
        query(statement).execute(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
