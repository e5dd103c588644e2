//! Timestamps travel as ISO-8601 UTC with milliseconds and `Z`, and are stored as
//! integer milliseconds since the epoch (portable across SQLite and PostgreSQL).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2026-11-24T10:00:00.000Z`
pub fn format_millis(millis: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(millis as i128 * 1_000_000)
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

pub fn parse_millis(text: &str) -> Option<i64> {
    let dt = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some((dt.unix_timestamp_nanos() / 1_000_000) as i64)
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
}
