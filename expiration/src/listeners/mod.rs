//! Where the queue is a table of the service's store (embedded mode), the listeners
//! schedule and drop jobs in the transaction that marks the event handled, so a backlog
//! of events shares one commit. Where it is outside (Redis), they do it in `prepare`,
//! idempotently, before the event is marked handled.

mod finished;
mod order_created;

use std::sync::Arc;

use ticketing_bus::HandlerError;
use ticketing_contracts::time::now_millis;
use ticketing_contracts::{OrderId, Timestamp};
use ticketing_store::{query, Tx};

pub use finished::FinishedListener;
pub use order_created::OrderCreatedListener;

use crate::{DelayQueue, SqlDelayQueue};

/// Where the expiration listeners schedule and drop jobs.
#[derive(Clone)]
pub enum State {
    /// A table of the service's own store: in the transaction that marks the event
    /// handled (no effect outside the database, so a backlog shares one commit).
    InStore(SqlDelayQueue),
    /// Outside it (Redis): in `prepare`, idempotently.
    Outside(Arc<dyn DelayQueue>),
}

/// Has the order been paid or cancelled? Its expiry must then never fire.
pub(crate) async fn is_finished(
    tx: &mut Tx,
    order_id: &OrderId,
) -> Result<bool, ticketing_store::Error> {
    Ok(query("SELECT 1 FROM finished_orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(tx)
        .await?
        .is_some())
}

/// Schedule the order's expiry at `due`. A queue in the store is written in `tx` (from
/// `handle`), one outside it directly (from `prepare`, `tx` is `None`); each call does
/// nothing in the other case.
///
/// A cancellation or payment handled first wins either way: the runner checks
/// `finished_orders` when a job fires (`service::fire`). In the store the check is also
/// made here, in the transaction at no round trip, so the table holds no job that can
/// never fire; outside it, a job for a finished order (a cancellation that overtook its
/// `order:created`, rare) waits in Redis until it is due and is then dropped, rather
/// than every order paying a query to the database first.
async fn schedule(
    state: &State,
    tx: Option<&mut Tx>,
    order_id: &OrderId,
    due: Timestamp,
) -> Result<(), HandlerError> {
    match (state, tx) {
        (State::InStore(queue), Some(tx)) => {
            if is_finished(&mut *tx, order_id).await? {
                return Ok(());
            }
            queue.schedule_in(tx, order_id, due).await?;
        }
        (State::Outside(queue), None) => queue.schedule(order_id, due).await?,
        // `prepare` of a queue in the store, or `handle` of one outside: the other does it.
        _ => {}
    }
    Ok(())
}

/// Drop the order's job: like [`schedule`], in `tx` for a queue in the store, directly
/// for one outside it.
async fn cancel(
    state: &State,
    tx: Option<&mut Tx>,
    order_id: &OrderId,
) -> Result<(), HandlerError> {
    match (state, tx) {
        (State::InStore(queue), Some(tx)) => queue.cancel_in(tx, order_id).await?,
        (State::Outside(queue), None) => queue.cancel(order_id).await?,
        _ => {}
    }
    Ok(())
}

impl State {
    /// Are the queue's changes outside the store's transactions?
    fn queue_outside(&self) -> bool {
        matches!(self, State::Outside(_))
    }

    /// After a commit that may have scheduled jobs.
    fn scheduled(&self) {
        if let State::InStore(queue) = self {
            queue.woken();
        }
    }
}

/// Remember that the order was paid or cancelled, so its expiry never fires.
async fn mark_finished(tx: &mut Tx, order_id: &OrderId) -> Result<(), HandlerError> {
    query(
        "INSERT INTO finished_orders (order_id, finished_at) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(order_id)
    .bind(now_millis())
    .execute(tx)
    .await?;
    Ok(())
}
