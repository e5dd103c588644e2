//! `order:cancelled` → drop the order's pending job.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCancelled;
use ticketing_store::Tx;

use super::{cancel, mark_finished, State};

pub struct OrderCancelledListener(pub State);

#[async_trait]
impl Listener for OrderCancelledListener {
    type Event = OrderCancelled;

    fn outside_effects(&self) -> bool {
        self.0.queue_outside()
    }

    async fn prepare(&self, order: &OrderCancelled) -> Result<(), HandlerError> {
        cancel(&self.0, None, &order.id).await
    }

    async fn handle(&self, tx: &mut Tx, order: OrderCancelled) -> Result<(), HandlerError> {
        cancel(&self.0, Some(&mut *tx), &order.id).await?;
        mark_finished(tx, &order.id).await
    }
}
