//! How money, times and statuses read on a page.

use time::OffsetDateTime;

use ticketing_contracts::api::orders::{CancelReason, OrderBody};
use ticketing_contracts::{Cents, OrderStatus};

/// `$1,234.50`
pub fn price(cents: Cents) -> String {
    let cents = cents.get();
    let whole = (cents / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("${grouped}.{:02}", cents % 100)
}

/// Whole seconds from now until `timestamp` (negative once past); `None` if unreadable.
pub fn seconds_until(timestamp: &str, now: OffsetDateTime) -> Option<i64> {
    let at = ticketing_contracts::time::parse_millis(timestamp)?;
    let now = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    // Round up: "0:01" stays on screen until the last millisecond has gone.
    Some((at - now + 999).div_euclid(1000))
}

/// `14:05`, or `1:02:03` past an hour.
pub fn countdown(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Where an order stands, as a person reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// Open and payable for this many more seconds.
    AwaitingPayment(i64),
    Expired,
    Cancelled,
    Complete,
}

impl OrderState {
    pub fn of(order: &OrderBody, now: OffsetDateTime) -> OrderState {
        let left = seconds_until(&order.expires_at, now).unwrap_or(0);
        match order.status {
            OrderStatus::Complete => OrderState::Complete,
            // An order past its expiry no longer holds its ticket, whether or not the
            // expiration event has arrived (the API's lazy expiry).
            OrderStatus::Created | OrderStatus::AwaitingPayment if left > 0 => {
                OrderState::AwaitingPayment(left)
            }
            OrderStatus::Created | OrderStatus::AwaitingPayment => OrderState::Expired,
            OrderStatus::Cancelled => match order.cancel_reason {
                Some(CancelReason::Expired) => OrderState::Expired,
                Some(CancelReason::CancelledByBuyer) => OrderState::Cancelled,
                // No reason given: one cancelled after its expiry time expired.
                None if left <= 0 => OrderState::Expired,
                None => OrderState::Cancelled,
            },
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            OrderState::AwaitingPayment(_) => "Awaiting payment",
            OrderState::Expired => "Expired",
            OrderState::Cancelled => "Cancelled",
            OrderState::Complete => "Complete",
        }
    }

    /// The badge's CSS class.
    pub fn class(self) -> &'static str {
        match self {
            OrderState::AwaitingPayment(_) => "badge badge-pending",
            OrderState::Expired | OrderState::Cancelled => "badge badge-muted",
            OrderState::Complete => "badge badge-success",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_as_dollars() {
        assert_eq!(price(Cents::new(2050)), "$20.50");
        assert_eq!(price(Cents::new(5)), "$0.05");
        assert_eq!(price(Cents::new(100_000_000)), "$1,000,000.00");
        assert_eq!(price(Cents::new(123_456)), "$1,234.56");
    }

    #[test]
    fn countdown_reads_minutes_and_seconds() {
        assert_eq!(countdown(899), "14:59");
        assert_eq!(countdown(5), "0:05");
        assert_eq!(countdown(3723), "1:02:03");
        assert_eq!(countdown(-3), "0:00");
    }

    #[test]
    fn seconds_round_up() {
        let now = time::macros::datetime!(2026-11-24 10:00 UTC);
        assert_eq!(seconds_until("2026-11-24T10:00:00.001Z", now), Some(1));
        assert_eq!(seconds_until("2026-11-24T10:15:00.000Z", now), Some(900));
        assert_eq!(seconds_until("2026-11-24T09:59:59.000Z", now), Some(-1));
        assert_eq!(seconds_until("garbage", now), None);
    }
}
