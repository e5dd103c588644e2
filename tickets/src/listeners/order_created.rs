//! `order:created` → the ticket is held by that order; publish `ticket:updated`.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::OrderCreated;
use ticketing_store::Tx;

use crate::tickets;

pub struct OrderCreatedListener;

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;

    fn batches(&self) -> bool {
        true
    }

    /// One statement reserves the batch's tickets; each `ticket:updated` is made in the
    /// trace of its order, and what the statement left (refused, or a second order for
    /// one ticket) is handled one by one, in order.
    async fn handle_all(
        &self,
        tx: &mut Tx,
        orders: Vec<Traced<OrderCreated>>,
    ) -> Result<(), HandlerError> {
        let pairs: Vec<_> = orders
            .iter()
            .map(|o| (&o.event.ticket.id, &o.event.id))
            .collect();
        let reserved = tickets::reserve_all(tx, &pairs).await?;
        for (Traced { event, trace }, ticket) in orders.into_iter().zip(reserved) {
            match ticket {
                Some(ticket) => trace.scope(tickets::announce(tx, &ticket)).await?,
                None => trace.scope(self.handle(tx, event)).await?,
            }
        }
        Ok(())
    }

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
