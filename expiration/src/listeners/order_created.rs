//! `order:created` → schedule the order's expiry at `reservedUntil` (`expiresAt` plus
//! the payment grace).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCreated;
use ticketing_contracts::time::parse_millis;
use ticketing_store::Tx;

use super::{schedule, State};

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

    fn outside_effects(&self) -> bool {
        self.0.queue_outside()
    }

    async fn prepare(&self, order: &OrderCreated) -> Result<(), HandlerError> {
        schedule(&self.0, None, &order.id, reserved_until(order)?).await
    }

    async fn handle(&self, tx: &mut Tx, order: OrderCreated) -> Result<(), HandlerError> {
        schedule(&self.0, Some(tx), &order.id, reserved_until(&order)?).await
    }

    fn committed(&self) {
        self.0.scheduled();
    }
}
