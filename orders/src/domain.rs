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
    pub cancel_reason: Option<CancelReason>,
}

/// States from which an order can still be cancelled or paid. (Which states hold a
/// ticket is decided by the `orders_one_active_per_ticket` index: [`HOLDS_TICKET`].)
pub const OPEN: [OrderStatus; 2] = [OrderStatus::Created, OrderStatus::AwaitingPayment];

/// The condition of `orders_one_active_per_ticket`, word for word: SQLite uses a partial
/// index only for a query that repeats its condition (it does not see that
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
