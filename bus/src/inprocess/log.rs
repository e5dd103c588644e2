//! The log's retention: what JetStream's `max_age` does for the other bus.

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::bus::RETENTION;
use ticketing_contracts::time::now_millis;
use ticketing_store::retention::{self, PRUNE_BATCH};
use ticketing_store::{query, Store};

/// Delete what is older than [`RETENTION`], as JetStream's `max_age` does, hourly
/// until the guard is dropped. Consumers never look below their cursor, so a gap under
/// it is invisible to them.
pub(super) fn spawn_pruner(store: Store) -> DropGuard {
    let stop = CancellationToken::new();
    retention::spawn_pruner("in-process log", stop.clone(), move || {
        let store = store.clone();
        async move { prune(&store, now_millis() - RETENTION.as_millis() as i64).await }
    });
    stop.drop_guard()
}

pub(super) async fn prune(
    store: &Store,
    before_millis: i64,
) -> Result<u64, ticketing_store::Error> {
    let Some(keep_from) = first_to_keep(store, before_millis).await? else {
        return Ok(0);
    };
    // A batch per statement, so that publishes never wait long behind it.
    let events = retention::delete_in_batches(store, || {
        query(
            "DELETE FROM events WHERE seq IN \
             (SELECT seq FROM events WHERE seq < $1 ORDER BY seq LIMIT $2)",
        )
        .bind(keep_from)
        .bind(PRUNE_BATCH)
    })
    .await?;
    let letters = query("DELETE FROM dead_letters WHERE dead_at < $1")
        .bind(before_millis)
        .execute(store.writer())
        .await?;
    Ok(events + letters)
}

/// The position of the first event published at or after `before_millis` (past the end
/// when none is; `None` for an empty log). The log is in publish order, so this is a
/// binary search over positions: a few point reads, where a scan for the first young
/// event would read everything that goes (there is no index on the time).
pub(super) async fn first_to_keep(
    store: &Store,
    before_millis: i64,
) -> Result<Option<i64>, ticketing_store::Error> {
    let bounds = query("SELECT MIN(seq) AS low, MAX(seq) AS high FROM events")
        .fetch_one(store.reader())
        .await?;
    let (Some(mut low), Some(high)) = (bounds.get("low")?, bounds.get::<Option<i64>>("high")?)
    else {
        return Ok(None);
    };
    // Everything below `low` goes; the first event at or after `high` stays (or there is
    // none).
    let mut high = high + 1;
    while low < high {
        let mid = low + (high - low) / 2;
        let next =
            query("SELECT seq, published_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1")
                .bind(mid)
                .fetch_optional(store.reader())
                .await?;
        match next {
            Some(event) if event.get::<i64>("published_at")? < before_millis => {
                low = event.get::<i64>("seq")? + 1;
            }
            _ => high = mid,
        }
    }
    Ok(Some(low))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::EventBus;
    use crate::envelope::Envelope;
    use crate::inprocess::InProcessBus;
    use ticketing_contracts::events::Subject;

    /// A bus in a directory of its own (kept while the bus runs), and `n` events for it.
    async fn bus_and_events(n: usize) -> (tempfile::TempDir, InProcessBus, Vec<Envelope>) {
        let dir = tempfile::tempdir().unwrap();
        let bus = InProcessBus::open(&dir.path().join("bus.db"))
            .await
            .unwrap();
        let events = (0..n)
            .map(|i| Envelope::raw(Subject::TicketCreated, format!("{i}").into_bytes()))
            .collect();
        (dir, bus, events)
    }

    #[tokio::test]
    async fn pruning_deletes_what_is_older_than_the_cutoff_only() {
        let (_dir, bus, events) = bus_and_events(3).await;
        for event in &events {
            bus.publish(event).await.unwrap();
        }
        // The first two were published an hour ago.
        let hour_ago = now_millis() - 3_600_000;
        query("UPDATE events SET published_at = $1 WHERE seq <= 2")
            .bind(hour_ago)
            .execute(bus.inner.store().await.unwrap().writer())
            .await
            .unwrap();
        let store = bus.inner.store().await.unwrap();
        assert_eq!(prune(store, hour_ago + 1).await.unwrap(), 2);
        let kept: Vec<_> = bus.read_log(0, None, 10).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].event.id, events[2].id);
        // Everything old: everything goes.
        assert_eq!(prune(store, i64::MAX).await.unwrap(), 1);
        assert!(bus.read_log(0, None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_first_event_to_keep_is_found_at_every_cut() {
        let (_dir, bus, events) = bus_and_events(50).await;
        let store = bus.inner.store().await.unwrap();
        assert_eq!(first_to_keep(store, 0).await.unwrap(), None);
        bus.publish_batch(&events).await.unwrap();
        // Publish times 10, 20, …, 500, with gaps in the positions.
        query("UPDATE events SET published_at = seq * 10")
            .execute(store.writer())
            .await
            .unwrap();
        query("DELETE FROM events WHERE seq % 7 = 0")
            .execute(store.writer())
            .await
            .unwrap();
        for cut in [0, 10, 11, 69, 70, 71, 250, 500, 501, 10_000] {
            let keep_from = first_to_keep(store, cut).await.unwrap().unwrap();
            // Below it exactly the old events, from it on exactly the young ones.
            let misplaced: i64 = query(
                "SELECT COUNT(*) FROM events \
                 WHERE (seq < $1 AND published_at >= $2) OR (seq >= $1 AND published_at < $2)",
            )
            .bind(keep_from)
            .bind(cut)
            .scalar(store.reader())
            .await
            .unwrap();
            assert_eq!(misplaced, 0, "cut {cut} at {keep_from}");
        }
    }
}
