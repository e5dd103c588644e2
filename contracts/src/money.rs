//! Money as integer cents. Prices arrive as JSON numbers or numeric strings with at most
//! two decimals and travel out as decimal numbers (`10.99`), never through floats.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub const MAX_PRICE_CENTS: i64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(i64);

impl Cents {
    pub fn new(cents: i64) -> Cents {
        Cents(cents)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// A price as the API accepts it: > 0, at most 1,000,000, at most two decimals.
    pub fn parse_price(raw: &Value) -> Result<Cents, String> {
        let text = match raw {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            _ => return Err("Price must be a number".into()),
        };
        let cents = parse_decimal(&text).ok_or("Price must be a number with at most 2 decimals")?;
        if cents <= 0 {
            return Err("Price must be greater than 0".into());
        }
        if cents > MAX_PRICE_CENTS {
            return Err("Price must be at most 1000000".into());
        }
        Ok(Cents(cents))
    }

    /// `units` of this price; `None` past what an `i64` holds (a price is at most 10^8
    /// cents and an order at most 100,000 units: never, for what the API accepts).
    pub fn times(self, units: i64) -> Option<Cents> {
        self.0.checked_mul(units).map(Cents)
    }

    /// `10.99`, `10`, `10.5` as JSON numbers.
    pub fn to_json_number(self) -> serde_json::Number {
        let text = self.to_string();
        // A decimal with two fraction digits always parses as an f64 that prints back
        // the same; the text form is what clients see.
        text.parse::<serde_json::Number>()
            .unwrap_or_else(|_| serde_json::Number::from(self.0 / 100))
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.0 / 100, (self.0 % 100).abs());
        match frac {
            0 => write!(f, "{whole}"),
            f2 if f2 % 10 == 0 => write!(f, "{whole}.{}", f2 / 10),
            f2 => write!(f, "{whole}.{f2:02}"),
        }
    }
}

/// Parse `123`, `123.4`, `123.45`, `1e2` (exponents refused) into cents, exactly.
pub(crate) fn parse_decimal(text: &str) -> Option<i64> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    // Leading zeros are not significant (`007.50`); nine significant digits bound the
    // value before the range check.
    if whole.is_empty()
        || whole.trim_start_matches('0').len() > 9
        || !whole.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Trailing zeros beyond the cents (`10.500`) are still exact.
    let frac = frac.trim_end_matches('0');
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.ends_with('.') {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac_cents: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    Some(whole * 100 + frac_cents)
}

impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_number().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Cents {
    /// Accepts the decimal form the events carry; rounds to the nearest cent.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let text = match &value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            _ => return Err(serde::de::Error::custom("price must be a number")),
        };
        if let Some(c) = parse_decimal(&text) {
            return Ok(Cents(c));
        }
        let f: f64 = text
            .parse()
            .map_err(|_| serde::de::Error::custom("price must be a number"))?;
        Ok(Cents((f * 100.0).round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_exactly() {
        assert_eq!(Cents::parse_price(&json!(10.99)).unwrap().get(), 1099);
        assert_eq!(Cents::parse_price(&json!("10.99")).unwrap().get(), 1099);
        assert_eq!(Cents::parse_price(&json!(20)).unwrap().get(), 2000);
        assert_eq!(Cents::parse_price(&json!(0.1)).unwrap().get(), 10);
        assert_eq!(
            Cents::parse_price(&json!(1000000)).unwrap().get(),
            100_000_000
        );
        // Leading zeros are not significant, however many.
        assert_eq!(
            Cents::parse_price(&json!("0000000001000000.00"))
                .unwrap()
                .get(),
            100_000_000
        );
        for bad in [
            json!(0),
            json!(-1),
            json!(10.999),
            json!("abc"),
            json!(1000000.01),
            json!(true),
            json!("1e3"),
            json!(""),
            json!("1000000000"),
        ] {
            assert!(Cents::parse_price(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_through_json() {
        for cents in [1, 10, 99, 100, 1099, 1050, 100_000_000] {
            let c = Cents::new(cents);
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Cents>(&text).unwrap(), c, "{text}");
        }
        assert_eq!(serde_json::to_string(&Cents::new(1099)).unwrap(), "10.99");
        assert_eq!(serde_json::to_string(&Cents::new(1050)).unwrap(), "10.5");
        assert_eq!(serde_json::to_string(&Cents::new(2000)).unwrap(), "20");
    }
}
