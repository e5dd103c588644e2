//! `payment:created` → mark the order complete, unless it was cancelled meanwhile.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::PaymentCreated;
use ticketing_store::Tx;

use crate::orders;

pub struct PaymentCreatedListener;

#[async_trait]
impl Listener for PaymentCreatedListener {
    type Event = PaymentCreated;

    async fn handle(&self, tx: &mut Tx, p: PaymentCreated) -> Result<(), HandlerError> {
        if orders::complete(tx, &p.order_id).await? {
            return Ok(());
        }
        match orders::status_of(tx, &p.order_id).await? {
            None => Err(HandlerError::Poison(format!(
                "unknown order {}",
                p.order_id
            ))),
            Some(status) => {
                tracing::warn!(
                    order = %p.order_id, payment = %p.id, %status,
                    "payment for an order that is no longer open"
                );
                Ok(())
            }
        }
    }
}
