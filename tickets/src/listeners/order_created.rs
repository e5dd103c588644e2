//! `order:created` → the order's units are counted on its listing ([`tickets::hold`]);
//! a ticket listed the seed's way is also held by that order, which publishes
//! `ticket:updated`. A counted listing publishes nothing per order.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::OrderCreated;
use ticketing_store::Tx;

use crate::tickets::{self, Listing};

pub struct OrderCreatedListener;

fn unknown_ticket(order: &OrderCreated) -> HandlerError {
    HandlerError::Poison(format!("unknown ticket {}", order.ticket.id))
}

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;

    fn batches(&self) -> bool {
        true
    }

    /// One statement counts the batch's units, one reserves its tickets listed the
    /// seed's way; each `ticket:updated` is made in the trace of its order, and what the
    /// statements left (refused, or a second order for one ticket) is handled one by
    /// one, in order.
    async fn handle_all(
        &self,
        tx: &mut Tx,
        orders: Vec<Traced<OrderCreated>>,
    ) -> Result<(), HandlerError> {
        let holds: Vec<_> = orders
            .iter()
            .map(|o| (&o.event.ticket.id, &o.event.id, o.event.quantity))
            .collect();
        let Some(listings) = tickets::hold_all(tx, &holds).await? else {
            for Traced { event, trace } in orders {
                trace.scope(self.handle(tx, event)).await?;
            }
            return Ok(());
        };
        let pairs: Vec<_> = orders
            .iter()
            .zip(&listings)
            .filter(|(_, listing)| **listing == Some(Listing::Single))
            .map(|(o, _)| (&o.event.ticket.id, &o.event.id))
            .collect();
        let mut reserved = tickets::reserve_all(tx, &pairs).await?.into_iter();
        for (Traced { event, trace }, listing) in orders.into_iter().zip(listings) {
            match listing {
                None => return Err(unknown_ticket(&event)),
                Some(Listing::Counted) => {}
                Some(Listing::Single) => match reserved.next().flatten() {
                    Some(ticket) => trace.scope(tickets::announce(tx, &ticket)).await?,
                    None => {
                        trace
                            .scope(tickets::reserve(tx, &event.ticket.id, &event.id))
                            .await?;
                    }
                },
            }
        }
        Ok(())
    }

    async fn handle(&self, tx: &mut Tx, order: OrderCreated) -> Result<(), HandlerError> {
        match tickets::hold(tx, &order.ticket.id, &order.id, order.quantity).await? {
            None => Err(unknown_ticket(&order)),
            Some(Listing::Counted) => Ok(()),
            Some(Listing::Single) => {
                tickets::reserve(tx, &order.ticket.id, &order.id).await?;
                Ok(())
            }
        }
    }
}
