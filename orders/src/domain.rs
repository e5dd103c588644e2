//! Order states and the transitions the service allows.

use ticketing_contracts::OrderStatus;

/// States from which an order can still be cancelled or paid. (Which states hold a
/// ticket is decided by the `orders_one_active_per_ticket` index.)
pub const OPEN: [OrderStatus; 2] = [OrderStatus::Created, OrderStatus::AwaitingPayment];

/// How long after `expiresAt` the expiration event waits before cancelling an unpaid
/// order. A payment accepted just before `expiresAt` publishes `payment:created` on
/// another subject than `expiration:complete`; the grace lets it arrive first instead of
/// having a paid order cancelled (see docs/decisions/0006-payments.md).
pub const PAYMENT_SETTLE_GRACE_MS: i64 = 2_000;
