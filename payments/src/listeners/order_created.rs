//! `order:created` → add the order to the replica (version 0).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCreated;
use ticketing_contracts::time::parse_millis;
use ticketing_store::Tx;

use crate::orders::{self, OrderCopy};

pub struct OrderCreatedListener;

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;

    async fn handle(&self, tx: &mut Tx, o: OrderCreated) -> Result<(), HandlerError> {
        let expires_at = parse_millis(&o.expires_at).ok_or_else(|| {
            HandlerError::Poison(format!("unreadable expiresAt {:?}", o.expires_at))
        })?;
        let copy = OrderCopy {
            id: o.id,
            user_id: o.user_id,
            status: o.status,
            price: o.ticket.price,
            expires_at,
            version: o.version,
        };
        let check = orders::apply_created(tx, &copy).await?;
        check.outcome("order:created")
    }
}
