//! `order:cancelled` → the order's units are released ([`tickets::unhold`]); a ticket
//! listed the seed's way is also released, but only if that order still holds it (a
//! newer order may already have taken it), which publishes `ticket:updated`.

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
        // The hold first: the order in which `order:created` takes the rows too.
        tickets::unhold(tx, &order.ticket.id, &order.id).await?;
        // A counted listing never has an `order_id`: this changes nothing there.
        tickets::release(tx, &order.ticket.id, &order.id).await?;
        Ok(())
    }
}
