//! `order:cancelled` → release the ticket, but only if that order still holds it (a
//! newer order may already have taken it); publish `ticket:updated`.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCancelled;
use ticketing_store::Tx;

use crate::tickets;

pub struct OrderCancelledListener;

#[async_trait]
impl Listener for OrderCancelledListener {
    type Event = OrderCancelled;

    async fn handle(&self, tx: &mut Tx, order: OrderCancelled) -> Result<(), HandlerError> {
        tickets::release(tx, &order.ticket.id, &order.id).await?;
        Ok(())
    }
}
