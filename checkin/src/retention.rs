//! Retention of gate records. Every scan a device sends is kept (its nonce's answer,
//! the conflicts list) and every revocation and check-in is a row of the changes feed:
//! both only grow. Gates need them while the event's doors are open and a seller
//! settling disputes a while after; so once a listing's event is older than the
//! retention, its scans and changes go, in bounded batches. Passes and check-ins (one
//! row per unit: who came) stay.
//!
//! A listing without an event time keeps them: a gate starting fresh reads the whole
//! feed for its listings, and a revocation pruned from it would admit a refunded pass.

use std::time::Duration;

use ticketing_contracts::time::now_millis;
use ticketing_store::retention::{delete_in_batches, spawn_pruner, PRUNE_BATCH};
use ticketing_store::{query, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Thirty days after the event.
pub const DEFAULT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Listings taken per round, so that one round's transaction stays short.
const LISTINGS_PER_ROUND: i64 = 100;

/// Prune the scans and changes of listings whose event ended more than `retention`
/// ago; the rows deleted.
pub async fn prune(store: &Store, retention: Duration) -> Result<u64, ticketing_store::Error> {
    let before = now_millis() - retention.as_millis() as i64;
    let mut total = 0;
    loop {
        let due: Vec<String> = query(
            "SELECT id FROM listings WHERE pruned = 0 AND event_at IS NOT NULL AND event_at < $1 \
             ORDER BY event_at LIMIT $2",
        )
        .bind(before)
        .bind(LISTINGS_PER_ROUND)
        .fetch_all(store.reader())
        .await?
        .into_iter()
        .map(|row| row.get("id"))
        .collect::<Result<_, _>>()?;
        for listing in &due {
            total += delete_in_batches(store, || {
                query(
                    "DELETE FROM changes WHERE seq IN \
                     (SELECT seq FROM changes WHERE ticket_id = $1 LIMIT $2)",
                )
                .bind(listing.as_str())
                .bind(PRUNE_BATCH)
            })
            .await?;
            total += delete_in_batches(store, || {
                query(
                    "DELETE FROM scans WHERE (device_id, nonce) IN \
                     (SELECT device_id, nonce FROM scans WHERE ticket_id = $1 LIMIT $2)",
                )
                .bind(listing.as_str())
                .bind(PRUNE_BATCH)
            })
            .await?;
            // Marked last: a process killed before this prunes the listing again. Scans a
            // device sends later still stay (rare, and small).
            query("UPDATE listings SET pruned = 1 WHERE id = $1")
                .bind(listing.as_str())
                .execute(store.writer())
                .await?;
        }
        if (due.len() as i64) < LISTINGS_PER_ROUND {
            return Ok(total);
        }
    }
}

/// Keep pruning (see [`prune`]) until `stop`.
pub fn spawn(store: Store, retention: Duration, stop: CancellationToken) -> JoinHandle<()> {
    spawn_pruner("checkin gate records", stop, move || {
        let store = store.clone();
        async move { prune(&store, retention).await }
    })
}
