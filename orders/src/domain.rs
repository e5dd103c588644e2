//! Order states and the transitions the service allows.

use std::time::Duration;

use ticketing_contracts::api::orders::CancelReason;
use ticketing_contracts::{OrderId, OrderStatus, Timestamp, UserId};

use crate::tickets::TicketCopy;

/// An order as its row holds it, with the copy of its ticket.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub deadline: Deadline,
    pub version: i64,
    pub ticket: TicketCopy,
    /// Units of the listing the order holds.
    pub quantity: i64,
    pub cancel_reason: Option<CancelReason>,
}

/// Units an order asks for: a whole number from 1, as the request gave it (absent: one).
/// Whether the listing allows that many in one order is for its `maxPerOrder` to say, so
/// a quantity that is no whole number from 1 is kept as such and refused against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units(Option<i64>);

impl Units {
    pub const ONE: Units = Units(Some(1));

    pub fn parse(raw: Option<&serde_json::Value>) -> Units {
        match raw {
            None | Some(serde_json::Value::Null) => Units::ONE,
            Some(value) => Units(
                value
                    .as_i64()
                    .filter(|n| (1..=ticketing_contracts::terms::MAX_QUANTITY).contains(n)),
            ),
        }
    }

    /// The units, if one order may take that many of a listing allowing `per_order`.
    pub fn within(self, per_order: i64) -> Option<i64> {
        self.0.filter(|n| *n <= per_order)
    }
}

/// States from which an order can still be cancelled or paid.
pub const OPEN: [OrderStatus; 2] = [OrderStatus::Created, OrderStatus::AwaitingPayment];

/// The states in which an order holds its units (counted in the listing's `held`), and
/// the condition of the `orders_holding_ticket` index, word for word: SQLite uses a
/// partial index only for a query that repeats its condition (it does not see that
/// `status IN ('created', 'awaiting:payment')` implies it), and scans the table
/// otherwise.
pub(crate) const HOLDS_TICKET: &str = "status IN ('created', 'awaiting:payment', 'complete')";

/// The one deadline of an order. The buyer can pay until `expires_at` (the payments
/// service refuses later charges by its own clock); the order keeps holding its ticket
/// until `reserved_until`, `expires_at` plus a grace in which a payment accepted just
/// before the deadline still reaches the orders service and completes the order.
///
/// Both are fixed when the order is placed and stored on its row (`expires_at`,
/// `reserved_until`): every path that frees a ticket — lazy expiry at placement, the
/// expiration job — reads `reserved_until` from there, so a change of the configured
/// grace never moves the end of an order already placed, and `order:created` announces
/// the very instant the row holds. See docs/decisions/0007-reservations.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub expires_at: Timestamp,
    pub reserved_until: Timestamp,
}

impl Deadline {
    /// The deadline of an order being placed: the only place the grace is added.
    pub fn new(expires_at: Timestamp, grace: Duration) -> Deadline {
        Deadline {
            expires_at,
            reserved_until: expires_at + grace,
        }
    }

    /// Does the order still hold its ticket at `now`?
    pub fn holds_at(self, now: Timestamp) -> bool {
        now < self.reserved_until
    }
}

/// When a write is made, and the deadlines of what it may place: an order placed now,
/// and an offer to a waiting list made now (an order too, with a longer window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub now: Timestamp,
    pub order: Deadline,
    pub offer: Deadline,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_its_ticket_through_the_grace_and_not_a_moment_longer() {
        let expires_at = Timestamp::from_millis(1_000_000);
        let deadline = Deadline::new(expires_at, Duration::from_secs(2));
        assert_eq!(deadline.reserved_until, Timestamp::from_millis(1_002_000));
        assert!(deadline.holds_at(expires_at + Duration::from_millis(1_999)));
        assert!(!deadline.holds_at(deadline.reserved_until));
    }
}
