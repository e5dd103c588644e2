//! `order:cancelled` → mark the replica's order cancelled, strictly in version order (a
//! cancellation that arrives before its `order:created` is retried later).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCancelled;
use ticketing_store::Tx;

use crate::orders;

pub struct OrderCancelledListener;

#[async_trait]
impl Listener for OrderCancelledListener {
    type Event = OrderCancelled;

    async fn handle(&self, tx: &mut Tx, o: OrderCancelled) -> Result<(), HandlerError> {
        let check = orders::apply_cancelled(tx, &o.id, o.version).await?;
        check.outcome("order:cancelled")
    }
}
