//! `payment:created` → drop the order's pending job.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::PaymentCreated;
use ticketing_store::Tx;

use super::{mark_finished, State};

pub struct PaymentCreatedListener(pub State);

#[async_trait]
impl Listener for PaymentCreatedListener {
    type Event = PaymentCreated;
    const OUTSIDE_EFFECTS: bool = true;

    async fn prepare(&self, payment: &PaymentCreated) -> Result<(), HandlerError> {
        self.0.queue.cancel(payment.order_id.as_str()).await?;
        Ok(())
    }

    async fn handle(&self, tx: &mut Tx, payment: PaymentCreated) -> Result<(), HandlerError> {
        mark_finished(tx, &payment.order_id).await
    }
}
