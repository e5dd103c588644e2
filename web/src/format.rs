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

/// `price` × `units`: what an order of several units costs.
pub fn total(price: Cents, units: i64) -> Cents {
    Cents::new(price.get().saturating_mul(units))
}

/// `24 Dec 2026, 18:00 UTC` for an API time (`None` if unreadable).
pub fn when(timestamp: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let millis = ticketing_contracts::time::parse_millis(timestamp)?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000).ok()?;
    Some(format!(
        "{} {} {}, {:02}:{:02} UTC",
        at.day(),
        MONTHS[usize::from(u8::from(at.month())) - 1],
        at.year(),
        at.hour(),
        at.minute()
    ))
}

/// A `datetime-local` input's value (`2026-12-24T18:00`, seconds optional), read as
/// UTC, as the API's RFC 3339 (`2026-12-24T18:00:00Z`). Anything else is returned as
/// typed, for the API to refuse beside its field.
pub fn utc_from_datetime_local(value: &str) -> String {
    let value = value.trim();
    let minutes_only = value.len() == 16 && value.as_bytes().get(10) == Some(&b'T');
    let with_seconds = value.len() == 19 && value.as_bytes().get(10) == Some(&b'T');
    if minutes_only {
        format!("{value}:00Z")
    } else if with_seconds {
        format!("{value}Z")
    } else {
        value.to_owned()
    }
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

/// An estimated wait, rounded as a person says it: `less than a minute`, `about 3
/// minutes`, `about 2 hours`.
pub fn eta(seconds: i64) -> String {
    let minutes = (seconds.max(0) + 30) / 60;
    match minutes {
        0 => "less than a minute".to_owned(),
        1 => "about a minute".to_owned(),
        2..=89 => format!("about {minutes} minutes"),
        _ => format!("about {} hours", (minutes + 30) / 60),
    }
}

/// Where an order stands, as a person reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// Open and payable for this many more seconds.
    AwaitingPayment(i64),
    Expired,
    Cancelled,
    /// Paid, then cancelled for a refund that went through.
    Refunded,
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
                Some(CancelReason::Refunded) => OrderState::Refunded,
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
            OrderState::Refunded => "Refunded",
            OrderState::Complete => "Complete",
        }
    }

    /// The badge's CSS class.
    pub fn class(self) -> &'static str {
        match self {
            OrderState::AwaitingPayment(_) => "badge badge-pending",
            OrderState::Expired | OrderState::Cancelled | OrderState::Refunded => {
                "badge badge-muted"
            }
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
    fn totals_and_times_read_plainly() {
        assert_eq!(price(total(Cents::new(2050), 3)), "$61.50");
        assert_eq!(
            when("2026-12-24T18:05:00.000Z").as_deref(),
            Some("24 Dec 2026, 18:05 UTC")
        );
        assert_eq!(when("soon"), None);
        assert_eq!(
            utc_from_datetime_local("2026-12-24T18:00"),
            "2026-12-24T18:00:00Z"
        );
        assert_eq!(
            utc_from_datetime_local("2026-12-24T18:00:30"),
            "2026-12-24T18:00:30Z"
        );
        assert_eq!(utc_from_datetime_local("tomorrow"), "tomorrow");
    }

    #[test]
    fn waits_read_roughly() {
        assert_eq!(eta(0), "less than a minute");
        assert_eq!(eta(29), "less than a minute");
        assert_eq!(eta(95), "about 2 minutes");
        assert_eq!(eta(60), "about a minute");
        assert_eq!(eta(3 * 3600 + 10), "about 3 hours");
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
