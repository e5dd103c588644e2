//! The tables every event-using service keeps in its own database: the transactional
//! outbox (events committed with the change that caused them, waiting to be relayed to
//! the bus) and the inbox (events a consumer group already handled, for idempotence).
//! The bus owns them: their schema here, their queries in `outbox.rs` and `inbox.rs`.
//!
//! Created idempotently at start-up rather than through each service's migrations, so a
//! service only has to call [`install`] after `Store::open`.

use ticketing_store::{Backend, Store};

/// `seq` must never hand out an old number again once the table empties: SQLite's
/// AUTOINCREMENT and PostgreSQL's sequence both guarantee it.
const OUTBOX_SQLITE: &str = "CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL,
    traceparent TEXT,
    tracestate TEXT,
    produced_at BIGINT NOT NULL
)";

const OUTBOX_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS outbox (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    payload BYTEA NOT NULL,
    traceparent TEXT,
    tracestate TEXT,
    produced_at BIGINT NOT NULL
)";

const INBOX: [&str; 2] = [
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
    let outbox = match store.backend() {
        Backend::Sqlite => OUTBOX_SQLITE,
        Backend::Postgres => OUTBOX_POSTGRES,
    };
    store
        .install(7301000000000001, std::iter::once(outbox).chain(INBOX))
        .await?;
    Ok(())
}
