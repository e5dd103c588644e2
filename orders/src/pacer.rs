//! The pacer: admits the heads of on-sale queues in force, in every orders process.
//!
//! Each step is decided in the database (`queue::pace`: the cursor moves by a
//! conditional update), so processes racing each other admit nobody twice, and one
//! process alone keeps every queue moving.

use std::time::Duration;

use ticketing_contracts::Timestamp;
use ticketing_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::queue::{self, Rate};

/// How often a process looks for heads to admit: a fifth of a second's admissions at
/// a time, so the rate holds within a second.
const EVERY: Duration = Duration::from_millis(200);

pub fn spawn(store: Store, rate: Rate, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match queue::pace(&store, Timestamp::now(), rate).await {
                Ok(0) => {}
                Ok(admitted) => tracing::debug!(admitted, "queue heads admitted"),
                Err(ticketing_store::Error::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "admitting queue heads failed; retried"),
            }
        }
    })
}
