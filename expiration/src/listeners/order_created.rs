//! `order:created` → schedule the order's expiry at `reservedUntil` (`expiresAt` plus
//! the payment grace).

use async_trait::async_trait;
use ticketing_bus::{HandlerError, Listener};
use ticketing_contracts::events::OrderCreated;
use ticketing_contracts::Timestamp;
use ticketing_store::Tx;

use super::{schedule, State};

/// When the order's expiry fires: the instant it stops holding its ticket.
///
/// An event from a producer older than `reservedUntil` fires at `expiresAt` instead.
/// The grace is the orders service's setting (`--payment-grace-ms`), which this service
/// cannot know, and a guess could only be wrong one way or the other; `expiresAt` is the
/// earliest the reservation can end, so the expiry is never late, and the orders service
/// holds the true deadline on the order's row: it answers an `expiration:complete` that
/// comes before it with a retry, and cancels once it has passed.
fn due_at(order: &OrderCreated) -> Result<Timestamp, HandlerError> {
    let (what, text) = match &order.reserved_until {
        Some(text) => ("reservedUntil", text),
        None => ("expiresAt", &order.expires_at),
    };
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| HandlerError::Poison(format!("unreadable {what} {text:?}")))
}

pub struct OrderCreatedListener(pub State);

#[async_trait]
impl Listener for OrderCreatedListener {
    type Event = OrderCreated;

    fn outside_effects(&self) -> bool {
        self.0.queue_outside()
    }

    async fn prepare(&self, order: &OrderCreated) -> Result<(), HandlerError> {
        schedule(&self.0, None, &order.id, due_at(order)?).await
    }

    async fn handle(&self, tx: &mut Tx, order: OrderCreated) -> Result<(), HandlerError> {
        schedule(&self.0, Some(tx), &order.id, due_at(&order)?).await
    }

    fn committed(&self) {
        self.0.scheduled();
    }
}

#[cfg(test)]
mod tests {
    use ticketing_contracts::events::OrderCreatedTicket;
    use ticketing_contracts::{Cents, OrderStatus};

    use super::*;

    fn created(expires_at: &str, reserved_until: Option<&str>) -> OrderCreated {
        OrderCreated {
            id: "o".into(),
            status: OrderStatus::Created,
            user_id: "u".into(),
            expires_at: expires_at.to_owned(),
            reserved_until: reserved_until.map(str::to_owned),
            version: 0,
            ticket: OrderCreatedTicket {
                id: "t".into(),
                price: Cents::new(100),
            },
            quantity: 1,
            waitlist_entry_id: None,
        }
    }

    #[test]
    fn fires_at_reserved_until_or_else_at_expires_at() {
        let expires_at = "2026-11-24T10:00:00.000Z";
        let reserved_until = "2026-11-24T10:00:02.000Z";
        assert_eq!(
            due_at(&created(expires_at, Some(reserved_until))).unwrap(),
            Timestamp::parse_rfc3339(reserved_until).unwrap()
        );
        assert_eq!(
            due_at(&created(expires_at, None)).unwrap(),
            Timestamp::parse_rfc3339(expires_at).unwrap()
        );
        assert!(matches!(
            due_at(&created(expires_at, Some("soon"))),
            Err(HandlerError::Poison(_))
        ));
    }
}
