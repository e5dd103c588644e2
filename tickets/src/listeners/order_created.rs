//! `order:created` → the ticket is held by that order; publish `ticket:updated`.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCreated;
use ticketing_store::Tx;

use crate::tickets;

pub struct OrderCreatedListener;

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;

    async fn handle(&self, tx: &mut Tx, order: OrderCreated) -> Result<(), HandlerError> {
        if tickets::reserve(tx, &order.ticket.id, &order.id)
            .await?
            .is_none()
            && !tickets::exists(tx, &order.ticket.id).await?
        {
            return Err(HandlerError::Poison(format!(
                "unknown ticket {}",
                order.ticket.id
            )));
        }
        Ok(())
    }
}
