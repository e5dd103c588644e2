//! A listing's units and the rules of their sale (issue 30, "drop day").
//!
//! A ticket listed the seed's way is one unit, sold to one order: it carries none of
//! these fields, in its body and in its events. A listing created (or updated) with any
//! of them has `quantity` units and carries all four from then on, the caps resolved to
//! their defaults by the tickets service.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most units one listing may have.
pub const MAX_QUANTITY: i64 = 100_000;
/// `maxPerOrder` when not given: this, or `quantity` when fewer.
pub const DEFAULT_MAX_PER_ORDER: i64 = 10;

/// The sale terms a ticket's body and events carry (all absent: one unit, as the seed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaleTerms {
    /// Units listed, 1 to 100,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// Most units one order may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_order: Option<i64>,
    /// Most units one account may hold, be offered or have bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_account: Option<i64>,
    /// When the sale opens (ISO-8601 UTC with milliseconds); absent: on sale now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, example = "2026-12-24T18:00:00.000Z")]
    pub on_sale_at: Option<String>,
}

impl SaleTerms {
    /// Units listed (a ticket without terms is one).
    pub fn units(&self) -> i64 {
        self.quantity.unwrap_or(1)
    }

    /// Most units one order may take.
    pub fn per_order(&self) -> i64 {
        self.max_per_order.unwrap_or(1)
    }

    /// Most units one account may have.
    pub fn per_account(&self) -> i64 {
        self.max_per_account.unwrap_or(1)
    }

    /// Was the ticket listed with units (any of the terms given)?
    pub fn is_counted(&self) -> bool {
        self.quantity.is_some()
    }
}

/// `quantity` of an order or event that does not say it: one unit.
pub fn one_unit() -> i64 {
    1
}

/// Most hours before the event a refund policy may close cancellations (a year).
pub const MAX_CUTOFF_HOURS: i64 = 8760;

/// When a listing's event takes place and how its paid orders may be cancelled (issue
/// 32). Both absent on a listing without them, in its body and in its events, as the
/// seed's; `refundPolicy` only with `eventAt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundTerms {
    /// When the event takes place (ISO-8601 UTC with milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, example = "2026-12-24T18:00:00.000Z")]
    pub event_at: Option<String>,
    /// How a buyer may cancel a paid order for a refund; absent: not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_policy: Option<RefundPolicy>,
}

/// Cancellations are open until `cutoffHours` before the event; the refund keeps
/// `feePercent` of the order's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundPolicy {
    /// Whole hours, 0 to 8,760.
    #[schema(minimum = 0, maximum = 8760, example = 48)]
    pub cutoff_hours: i64,
    /// 0 to 100, at most two decimals (`10`, `2.5`).
    #[schema(value_type = f64, minimum = 0, maximum = 100, example = 10)]
    pub fee_percent: Percent,
}

/// A percentage with two decimals, exactly: hundredths of a percent (basis points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(i64);

impl Percent {
    /// 100 %.
    pub const WHOLE: Percent = Percent(10_000);

    pub fn from_basis_points(bp: i64) -> Percent {
        Percent(bp)
    }

    pub fn basis_points(self) -> i64 {
        self.0
    }

    /// This share of `total` cents, rounded half up to the cent.
    pub fn of(self, total: i64) -> i64 {
        (total * self.0 + 5_000).div_euclid(10_000)
    }

    /// A percentage as the API accepts it: a number (or numeric string) from 0 to 100
    /// with at most two decimals.
    pub fn parse(raw: &serde_json::Value) -> Option<Percent> {
        let text = match raw {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.trim().to_owned(),
            _ => return None,
        };
        let bp = crate::money::parse_decimal(&text)?;
        (0..=Self::WHOLE.0).contains(&bp).then_some(Percent(bp))
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::money::Cents::new(self.0).fmt(f)
    }
}

// On the wire a plain decimal number (`10`, `2.5`), as prices are.
impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::money::Cents::new(self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::money::Cents::deserialize(deserializer).map(|c| Percent(c.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fees_round_half_up_to_the_cent() {
        let ten = Percent::parse(&json!(10)).unwrap();
        assert_eq!(ten.of(2000), 200);
        // 12.5 % of 0.99 is 12.375 cents: 12; of 1.00, 12.5: 13.
        let p = Percent::parse(&json!(12.5)).unwrap();
        assert_eq!(p.of(99), 12);
        assert_eq!(p.of(100), 13);
        assert_eq!(Percent::WHOLE.of(1234), 1234);
        assert_eq!(Percent::parse(&json!(0)).unwrap().of(1234), 0);
        for bad in [
            json!(-1),
            json!(100.01),
            json!(1.234),
            json!(true),
            json!("x"),
        ] {
            assert_eq!(Percent::parse(&bad), None, "{bad}");
        }
        assert_eq!(serde_json::to_string(&p).unwrap(), "12.5");
        assert_eq!(serde_json::from_str::<Percent>("12.5").unwrap(), p);
    }
}
