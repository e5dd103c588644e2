//! Order states and the transitions the service allows.

use ticketing_shared::events::status;

/// States from which an order can still be cancelled or paid. (Which states hold a
/// ticket is decided by the `orders_one_active_per_ticket` index.)
pub const OPEN: [&str; 2] = [status::CREATED, status::AWAITING_PAYMENT];
