//! The order events passes follow.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::{OrderCancelled, OrderCompleted};
use ticketing_store::Tx;

use crate::passes;

/// `order:completed` → a pass per unit.
pub struct OrderCompletedListener;

#[async_trait]
impl Listener for OrderCompletedListener {
    type Event = OrderCompleted;

    async fn handle(&self, tx: &mut Tx, o: OrderCompleted) -> Result<(), HandlerError> {
        if !(1..=10_000).contains(&o.quantity) {
            return Err(HandlerError::Poison(format!(
                "order {}: quantity {}",
                o.id, o.quantity
            )));
        }
        passes::issue(tx, &o.id, o.version, &o.user_id, &o.ticket.id, o.quantity).await?;
        Ok(())
    }
}

/// `order:cancelled` → its passes (if it had any: a refund) are revoked.
pub struct OrderCancelledListener;

#[async_trait]
impl Listener for OrderCancelledListener {
    type Event = OrderCancelled;

    async fn handle(&self, tx: &mut Tx, o: OrderCancelled) -> Result<(), HandlerError> {
        let reason = o.cancel_reason.as_deref().unwrap_or("cancelled");
        passes::revoke_order(tx, &o.id, o.version, &o.ticket.id, reason).await?;
        Ok(())
    }
}
