//! `order:created` → schedule the order's expiry at `expiresAt`.

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCreated;
use ticketing_contracts::time::parse_millis;
use ticketing_store::Tx;

use super::{is_finished, State};

pub struct OrderCreatedListener(pub State);

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;
    const OUTSIDE_EFFECTS: bool = true;

    async fn prepare(&self, order: &OrderCreated) -> Result<(), HandlerError> {
        let due = parse_millis(&order.expires_at).ok_or_else(|| {
            HandlerError::Poison(format!("unreadable expiresAt {:?}", order.expires_at))
        })?;
        // A cancellation or payment handled first wins: no job for a finished order.
        if !is_finished(self.0.store.reader(), &order.id).await? {
            self.0.queue.schedule(&order.id, due).await?;
        }
        Ok(())
    }

    async fn handle(&self, _tx: &mut Tx, _order: OrderCreated) -> Result<(), HandlerError> {
        Ok(())
    }
}
