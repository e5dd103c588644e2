//! `order:cancelled` → drop the order's pending job.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCancelled;
use ticketing_store::Tx;

use super::{mark_finished, State};

pub struct OrderCancelledListener(pub State);

#[async_trait]
impl Listener for OrderCancelledListener {
    type Event = OrderCancelled;
    const OUTSIDE_EFFECTS: bool = true;

    async fn prepare(&self, order: &OrderCancelled) -> Result<(), HandlerError> {
        self.0.queue.cancel(order.id.as_str()).await?;
        Ok(())
    }

    async fn handle(&self, tx: &mut Tx, order: OrderCancelled) -> Result<(), HandlerError> {
        mark_finished(tx, &order.id).await
    }
}
