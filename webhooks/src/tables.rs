//! The deliveries' tables, created at start-up: a delivery's `seq` is the engine's own
//! counter (AUTOINCREMENT, a sequence), which the shared migration dialect cannot declare.
//!
//! Two tables: `deliveries`, every delivery from queueing to its end and for the
//! retention period after (the API's list, replays), and `delivery_queue`, a row per
//! pending delivery only, the one the workers claim from, promote in and release. A
//! queue row is written three or four times in its short life; kept apart from the
//! history it stays small, so a vacuum of it (the store's upkeep runs one every
//! thousand dead rows or so, whatever the server's autovacuum does) takes milliseconds
//! (decision 0031).

use ticketing_store::{query, Backend, Store};

/// The deliveries; `seq` is the engine's counter, as `seq` declares it. `status` is
/// `pending` exactly while the delivery has its row in the queue.
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
            delivered_at BIGINT,
            ended_at BIGINT,
            UNIQUE (endpoint_id, event_id)
        )"
    )
}

/// The pending deliveries: `next_at` says when one is due ([`WAITING`] behind its key's
/// head, its lease's end while claimed), `claim` whose lease it is.
///
/// [`WAITING`]: crate::deliveries::WAITING
const QUEUE: &str = "CREATE TABLE IF NOT EXISTS delivery_queue (
    seq BIGINT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    order_key TEXT NOT NULL,
    queued_at BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    claim TEXT
)";

const INDEXES: [&str; 6] = [
    // The API's list, and retention.
    "CREATE INDEX IF NOT EXISTS deliveries_by_endpoint ON deliveries (endpoint_id, seq)",
    "CREATE INDEX IF NOT EXISTS deliveries_ended ON deliveries (ended_at) WHERE ended_at IS NOT NULL",
    // The claim's candidates, longest due first (SQLite), and the waiting rows the
    // missed-promotion sweep looks for.
    "CREATE INDEX IF NOT EXISTS delivery_queue_due ON delivery_queue (next_at, seq)",
    // An endpoint's due rows, longest due first (PostgreSQL's claims).
    "CREATE INDEX IF NOT EXISTS delivery_queue_due_by_endpoint \
     ON delivery_queue (endpoint_id, next_at, seq)",
    // Is there an earlier pending delivery of the key (then this one is not its head)?
    "CREATE INDEX IF NOT EXISTS delivery_queue_key ON delivery_queue (endpoint_id, order_key, seq)",
    // Live leases per endpoint.
    "CREATE INDEX IF NOT EXISTS delivery_queue_leased ON delivery_queue (lease_until)",
];

/// Tables of earlier releases kept the queue's columns in `deliveries` itself: the
/// pending rows move to the queue (those behind their key's head waiting, as the first
/// release did not do), then the columns and their indexes go; `claim`, the column the
/// check for old tables looks at, last.
const UPGRADE: [&str; 10] = [
    "INSERT INTO delivery_queue (seq, endpoint_id, order_key, queued_at, next_at, lease_until, claim) \
     SELECT seq, endpoint_id, order_key, queued_at, next_at, lease_until, claim FROM deliveries \
     WHERE status = 'pending' ON CONFLICT (seq) DO NOTHING",
    "UPDATE delivery_queue SET next_at = 9223372036854775807 WHERE lease_until = 0 \
     AND EXISTS (SELECT 1 FROM delivery_queue e WHERE e.endpoint_id = delivery_queue.endpoint_id \
         AND e.order_key = delivery_queue.order_key AND e.seq < delivery_queue.seq)",
    "DROP INDEX IF EXISTS deliveries_pending",
    "DROP INDEX IF EXISTS deliveries_due",
    "DROP INDEX IF EXISTS deliveries_due_by_endpoint",
    "DROP INDEX IF EXISTS deliveries_pending_key",
    "DROP INDEX IF EXISTS deliveries_leased",
    "ALTER TABLE deliveries DROP COLUMN next_at",
    "ALTER TABLE deliveries DROP COLUMN lease_until",
    "ALTER TABLE deliveries DROP COLUMN claim",
];

pub async fn install(store: &Store) -> anyhow::Result<()> {
    let table = deliveries(match store.backend() {
        Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Backend::Postgres => "BIGSERIAL PRIMARY KEY",
    });
    let per_backend: Vec<String> = match store.backend() {
        // One process owns the file: what it reads now still holds when it installs.
        Backend::Sqlite => {
            let old =
                query("SELECT 1 AS old FROM pragma_table_info('deliveries') WHERE name = 'claim'")
                    .fetch_optional(store.reader())
                    .await?
                    .is_some();
            if old {
                UPGRADE.iter().map(|s| s.to_string()).collect()
            } else {
                Vec::new()
            }
        }
        // Processes start side by side: the check runs under the install's lock.
        // Analyzes skip the bodies: they are never filtered by, and their sample was
        // most of an analyze's cost.
        Backend::Postgres => {
            let body: String = UPGRADE
                .iter()
                .map(|s| format!("EXECUTE '{}';", s.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                format!(
                    "DO $$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = 'deliveries' \
                     AND column_name = 'claim') THEN {body} END IF; END $$"
                ),
                "ALTER TABLE deliveries ALTER COLUMN body SET STATISTICS 0".to_owned(),
            ]
        }
    };
    store
        .install(
            7301000000000031,
            [table.as_str(), QUEUE]
                .into_iter()
                .chain(per_backend.iter().map(String::as_str))
                .chain(INDEXES),
        )
        .await?;
    Ok(())
}
