//! Order states and the transitions the service allows.

use ticketing_contracts::OrderStatus;

/// States from which an order can still be cancelled or paid. (Which states hold a
/// ticket is decided by the `orders_one_active_per_ticket` index.)
pub const OPEN: [OrderStatus; 2] = [OrderStatus::Created, OrderStatus::AwaitingPayment];

/// The one deadline of an order. The buyer can pay until `expires_at` (the payments
/// service refuses later charges by its own clock); the order keeps holding its ticket
/// until `reserved_until`, `expires_at` plus a grace in which a payment accepted just
/// before the deadline still reaches the orders service and completes the order. Every
/// path that frees a ticket — lazy expiry at placement, the expiration job — uses
/// `reserved_until`. See docs/decisions/0007-reservations.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub expires_at: i64,
    pub reserved_until: i64,
}

impl Deadline {
    pub fn new(expires_at: i64, grace_ms: i64) -> Deadline {
        Deadline {
            expires_at,
            reserved_until: expires_at + grace_ms,
        }
    }
}
