//! The deliveries table, created at start-up: its `seq` is the engine's own counter
//! (AUTOINCREMENT, a sequence), which the shared migration dialect cannot declare.

use ticketing_store::{Backend, Store};

/// The deliveries table; `seq` is the engine's counter, as `seq` declares it.
fn deliveries(seq: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS deliveries (
            seq {seq},
            endpoint_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            order_key TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            queued_at BIGINT NOT NULL,
            status TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            next_at BIGINT NOT NULL,
            lease_until BIGINT NOT NULL,
            claim TEXT,
            delivered_at BIGINT,
            ended_at BIGINT,
            UNIQUE (endpoint_id, event_id)
        )"
    )
}

/// The indexes the workers and the API read by. Pending rows are few next to the
/// delivered ones kept for the retention period: partial indexes keep the claims'
/// scans to them.
const INDEXES: [&str; 5] = [
    // The claim's candidates, longest due first (SQLite), and the waiting rows the
    // missed-promotion sweep looks for.
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at, seq) WHERE status = 'pending'",
    // An endpoint's due rows, longest due first (PostgreSQL's claims).
    "CREATE INDEX IF NOT EXISTS deliveries_due_by_endpoint ON deliveries (endpoint_id, next_at, seq) \
     WHERE status = 'pending'",
    // Is there an earlier pending delivery of the key (then this one is not its head)?
    "CREATE INDEX IF NOT EXISTS deliveries_pending_key ON deliveries (endpoint_id, order_key, seq) \
     WHERE status = 'pending'",
    // Live leases per endpoint.
    "CREATE INDEX IF NOT EXISTS deliveries_leased ON deliveries (lease_until) WHERE status = 'pending'",
    // The API's list, and retention.
    "CREATE INDEX IF NOT EXISTS deliveries_by_endpoint ON deliveries (endpoint_id, seq)",
];

/// Tables of the first release: claims read heads by seq (the index is gone) and every
/// pending delivery was due; now those behind their key's head wait (decision 0031).
const UPGRADES: [&str; 2] = [
    "DROP INDEX IF EXISTS deliveries_pending",
    "UPDATE deliveries SET next_at = 9223372036854775807 \
     WHERE status = 'pending' AND lease_until = 0 AND next_at <> 9223372036854775807 \
     AND EXISTS (SELECT 1 FROM deliveries e WHERE e.endpoint_id = deliveries.endpoint_id \
         AND e.order_key = deliveries.order_key AND e.status = 'pending' AND e.seq < deliveries.seq)",
];

const ENDED_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS deliveries_ended ON deliveries (ended_at) WHERE ended_at IS NOT NULL";

pub async fn install(store: &Store) -> anyhow::Result<()> {
    let table = deliveries(match store.backend() {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
    });
    store
        .install(
            7301000000000031,
            std::iter::once(table.as_str())
                .chain(INDEXES)
                .chain(std::iter::once(ENDED_INDEX))
                .chain(UPGRADES),
        )
        .await?;
    Ok(())
}
