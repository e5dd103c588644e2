//! `payment:created` → drop the order's pending job.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::PaymentCreated;
use ticketing_store::Tx;

use super::{cancel, mark_finished, State};

pub struct PaymentCreatedListener(pub State);

#[async_trait]
impl Listener for PaymentCreatedListener {
    type Event = PaymentCreated;

    fn outside_effects(&self) -> bool {
        self.0.queue_outside()
    }

    async fn prepare(&self, payment: &PaymentCreated) -> Result<(), HandlerError> {
        cancel(&self.0, None, &payment.order_id).await
    }

    async fn handle(&self, tx: &mut Tx, payment: PaymentCreated) -> Result<(), HandlerError> {
        cancel(&self.0, Some(&mut *tx), &payment.order_id).await?;
        mark_finished(tx, &payment.order_id).await
    }
}
