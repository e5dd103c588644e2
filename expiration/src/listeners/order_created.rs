//! `order:created` → schedule the order's expiry at `reservedUntil` (`expiresAt` plus
//! the payment grace).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCreated;
use ticketing_contracts::time::parse_millis;
use ticketing_store::Tx;

use super::{is_finished, State};

/// What orders published before `reservedUntil` existed held: `expiresAt` plus 2 s.
const LEGACY_GRACE_MS: i64 = 2_000;

/// When the order stops holding its ticket: the instant its expiry fires.
fn reserved_until(order: &OrderCreated) -> Result<i64, HandlerError> {
    let unreadable =
        |what: &str, text: &str| HandlerError::Poison(format!("unreadable {what} {text:?}"));
    match &order.reserved_until {
        Some(text) => parse_millis(text).ok_or_else(|| unreadable("reservedUntil", text)),
        None => parse_millis(&order.expires_at)
            .map(|at| at + LEGACY_GRACE_MS)
            .ok_or_else(|| unreadable("expiresAt", &order.expires_at)),
    }
}

pub struct OrderCreatedListener(pub State);

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;
    const OUTSIDE_EFFECTS: bool = true;

    async fn prepare(&self, order: &OrderCreated) -> Result<(), HandlerError> {
        let due = reserved_until(order)?;
        // A cancellation or payment handled first wins: no job for a finished order.
        if !is_finished(self.0.store.reader(), &order.id).await? {
            self.0.queue.schedule(order.id.as_str(), due).await?;
        }
        Ok(())
    }

    async fn handle(&self, _tx: &mut Tx, _order: OrderCreated) -> Result<(), HandlerError> {
        Ok(())
    }
}
