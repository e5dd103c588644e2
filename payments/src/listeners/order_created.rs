//! `order:created` → add the order to the replica (newest wins, decision 0023).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener, Traced};
use ticketing_contracts::events::OrderCreated;
use ticketing_contracts::time::parse_millis;
use ticketing_store::Tx;

use crate::orders::{self, OrderCopy};

pub struct OrderCreatedListener;

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;

    async fn handle(&self, tx: &mut Tx, o: OrderCreated) -> Result<(), HandlerError> {
        Ok(orders::apply_created_all(tx, &[copy_of(o)?]).await?)
    }

    fn batches(&self) -> bool {
        true
    }

    async fn handle_all(
        &self,
        tx: &mut Tx,
        events: Vec<Traced<OrderCreated>>,
    ) -> Result<(), HandlerError> {
        let copies = events
            .into_iter()
            .map(|t| copy_of(t.event))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(orders::apply_created_all(tx, &copies).await?)
    }
}

fn copy_of(o: OrderCreated) -> Result<OrderCopy, HandlerError> {
    let expires_at = parse_millis(&o.expires_at)
        .ok_or_else(|| HandlerError::Poison(format!("unreadable expiresAt {:?}", o.expires_at)))?;
    Ok(OrderCopy {
        id: o.id,
        user_id: o.user_id,
        status: o.status,
        price: o.ticket.price,
        expires_at,
        version: o.version,
    })
}
