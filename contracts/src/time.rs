//! Timestamps travel as ISO-8601 UTC with milliseconds and `Z`, and are stored as
//! integer milliseconds since the epoch (portable across SQLite and PostgreSQL).

use std::ops::{Add, Sub};
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// An instant, in milliseconds since the Unix epoch (UTC): the precision the contract
/// carries, and an integer column on both engines. A type of its own so that an instant
/// is not mistaken for a duration or an id, and so that the text form is written in one
/// place.
// No `Default`: an instant that silently defaults to the epoch is a deadline long past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const EPOCH: Timestamp = Timestamp(0);

    pub fn now() -> Timestamp {
        Timestamp((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }

    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch: how it is stored and bound.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// An RFC 3339 instant (`2026-11-24T10:00:00.123Z`, any offset); sub-millisecond
    /// digits are dropped.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let dt = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        Some(Timestamp((dt.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// `2026-11-24T10:00:00.000Z`: always UTC, always three fraction digits, as the
    /// seed's clients expect.
    pub fn to_rfc3339(self) -> String {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.millisecond()
        )
    }

    /// How long after `earlier` this is; zero when it is not after it.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0) as u64)
    }
}

/// A duration in whole milliseconds, saturated: no configured duration comes near
/// `i64::MAX` ms, and a clamp is better than a wrap-around into the past.
fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_millis(d)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_millis(d)))
    }
}

impl From<i64> for Timestamp {
    fn from(millis: i64) -> Timestamp {
        Timestamp(millis)
    }
}

impl From<Timestamp> for i64 {
    fn from(t: Timestamp) -> i64 {
        t.0
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;

    fn from_str(text: &str) -> Result<Timestamp, String> {
        Timestamp::parse_rfc3339(text).ok_or_else(|| format!("not an RFC 3339 instant: {text:?}"))
    }
}

// The integer forms below predate [`Timestamp`] and are kept for the callers that still
// hold raw milliseconds (tests, other services).

pub fn now_millis() -> i64 {
    Timestamp::now().as_millis()
}

/// `2026-11-24T10:00:00.000Z`
pub fn format_millis(millis: i64) -> String {
    Timestamp::from_millis(millis).to_rfc3339()
}

pub fn parse_millis(text: &str) -> Option<i64> {
    Timestamp::parse_rfc3339(text).map(Timestamp::as_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_millis() {
        let text = "2026-11-24T10:00:00.123Z";
        let millis = parse_millis(text).unwrap();
        assert_eq!(format_millis(millis), text);
    }

    #[test]
    fn timestamps_round_trip_through_text_and_integers() {
        let text = "2026-11-24T10:00:00.123Z";
        let at: Timestamp = text.parse().unwrap();
        assert_eq!(at.to_rfc3339(), text);
        assert_eq!(at.to_string(), text);
        assert_eq!(Timestamp::from(i64::from(at)), at);
        assert_eq!(Timestamp::from_millis(at.as_millis()), at);
        // Another offset is the same instant, written back in UTC.
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-24T11:00:00.123+01:00"),
            Some(at)
        );
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations_move_timestamps() {
        let at = Timestamp::from_millis(10_000);
        let later = at + Duration::from_millis(2_000);
        assert_eq!(later.as_millis(), 12_000);
        assert_eq!(later - Duration::from_millis(2_000), at);
        assert!(at < later);
        assert_eq!(
            later.saturating_duration_since(at),
            Duration::from_millis(2_000)
        );
        assert_eq!(at.saturating_duration_since(later), Duration::ZERO);
        assert_eq!(
            Timestamp::from_millis(i64::MAX - 1) + Duration::MAX,
            Timestamp::from_millis(i64::MAX)
        );
        let now = Timestamp::now();
        assert!(now > Timestamp::EPOCH);
    }
}
