//! The queue lives outside the store's transactions (Redis, or its own statements), so
//! every listener here schedules or drops jobs in `prepare`, idempotently, before the
//! event is marked handled.

mod order_cancelled;
mod order_created;
mod payment_created;

use std::sync::Arc;

use ticketing_bus::HandlerError;
use ticketing_contracts::time::now_millis;
use ticketing_contracts::OrderId;
use ticketing_store::{query, On, Store, Tx};

pub use order_cancelled::OrderCancelledListener;
pub use order_created::OrderCreatedListener;
pub use payment_created::PaymentCreatedListener;

use crate::DelayQueue;

/// What the expiration listeners share.
#[derive(Clone)]
pub struct State {
    pub store: Store,
    pub queue: Arc<dyn DelayQueue>,
}

/// Has the order been paid or cancelled? Its expiry must then never fire.
pub(crate) async fn is_finished<'a>(
    on: impl Into<On<'a>>,
    order_id: &OrderId,
) -> Result<bool, sqlx::Error> {
    Ok(query("SELECT 1 FROM finished_orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(on)
        .await?
        .is_some())
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
