//! Ticket input, parsed.

use serde_json::Value;
use ticketing_contracts::money::Cents;
use ticketing_contracts::terms::{SaleTerms, DEFAULT_MAX_PER_ORDER, MAX_QUANTITY};
use ticketing_contracts::time::Timestamp;
use ticketing_kit::validate::{as_str, bounded, Fields};

pub use ticketing_contracts::api::tickets::MAX_TITLE_CHARS;

/// A title: not empty after trimming, at most 200 characters; stored trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &Value) -> Result<Title, String> {
        let text = as_str("title", raw)?.trim();
        let text = bounded("title", text, "Title is required", MAX_TITLE_CHARS)?;
        Ok(Title(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn parse_price(raw: &Value) -> Result<Cents, String> {
    Cents::parse_price(raw)
}

/// A listing's sale terms, resolved: every cap known and within its bounds
/// (`1 <= max_per_order <= max_per_account <= quantity <= MAX_QUANTITY`). Made by
/// [`TermsInput::resolve`], or read back from the row one was written to
/// ([`Terms::from_stored`]), so a value of this type is always valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    quantity: i64,
    max_per_order: i64,
    max_per_account: i64,
    on_sale_at: Option<Timestamp>,
}

impl Terms {
    /// Terms as stored (the row was written from a [`Terms`]).
    pub fn from_stored(
        quantity: i64,
        max_per_order: i64,
        max_per_account: i64,
        on_sale_at: Option<Timestamp>,
    ) -> Terms {
        Terms {
            quantity,
            max_per_order,
            max_per_account,
            on_sale_at,
        }
    }

    pub fn quantity(&self) -> i64 {
        self.quantity
    }

    pub fn max_per_order(&self) -> i64 {
        self.max_per_order
    }

    pub fn max_per_account(&self) -> i64 {
        self.max_per_account
    }

    pub fn on_sale_at(&self) -> Option<Timestamp> {
        self.on_sale_at
    }

    /// As a body or an event carries them.
    pub fn to_contract(self) -> SaleTerms {
        SaleTerms {
            quantity: Some(self.quantity),
            max_per_order: Some(self.max_per_order),
            max_per_account: Some(self.max_per_account),
            on_sale_at: self.on_sale_at.map(Timestamp::to_rfc3339),
        }
    }
}

/// What a request says of `onSaleAt`.
#[derive(Debug, Clone, Default)]
pub enum OnSaleAtInput {
    /// Absent: the listing's stays (none on a new one).
    #[default]
    Keep,
    /// `null` on update: on sale now.
    Clear,
    Set(Value),
}

/// The terms fields of a create or update body, as sent.
#[derive(Debug, Clone, Default)]
pub struct TermsInput {
    pub quantity: Option<Value>,
    pub max_per_order: Option<Value>,
    pub max_per_account: Option<Value>,
    pub on_sale_at: OnSaleAtInput,
}

/// The listing a [`TermsInput`] changes: its terms (none: listed the seed's way) and
/// the units its orders hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct Current {
    pub terms: Option<Terms>,
    pub held: i64,
}

impl TermsInput {
    /// Does the body say anything of the terms?
    pub fn given(&self) -> bool {
        self.quantity.is_some()
            || self.max_per_order.is_some()
            || self.max_per_account.is_some()
            || !matches!(self.on_sale_at, OnSaleAtInput::Keep)
    }

    /// The listing's terms after this input: `Some(None)` when the listing stays one
    /// unit the seed's way (no terms given, none before), `Some(Some(..))` once it is
    /// counted, `None` when a field failed (each failure recorded in `fields`).
    ///
    /// Absent fields take the listing's values (caps clamped to the new quantity), or
    /// the defaults: quantity 1, `maxPerOrder` the quantity up to 10, `maxPerAccount`
    /// `maxPerOrder`.
    pub fn resolve(&self, fields: &mut Fields, current: Current) -> Option<Option<Terms>> {
        if !self.given() {
            return Some(current.terms);
        }
        let before = current.terms;
        let quantity = match &self.quantity {
            Some(raw) => fields.parse("quantity", Some(raw), |v| {
                let q = whole(v, 1, MAX_QUANTITY).ok_or_else(|| {
                    format!("Quantity must be a whole number from 1 to {MAX_QUANTITY}")
                })?;
                if q < current.held {
                    return Err(format!("Cannot lower quantity below {}", current.held));
                }
                Ok(q)
            }),
            None => Some(before.map_or(1, |t| t.quantity)),
        };
        // A failed quantity still lets the caps be checked against the largest one.
        let upper = quantity.unwrap_or(MAX_QUANTITY);
        let max_per_order = match &self.max_per_order {
            Some(raw) => fields.parse("maxPerOrder", Some(raw), |v| {
                whole(v, 1, upper).ok_or_else(|| {
                    format!("Max per order must be a whole number from 1 to {upper}")
                })
            }),
            None => Some(match before {
                Some(t) => t.max_per_order.min(upper),
                None => upper.min(DEFAULT_MAX_PER_ORDER),
            }),
        };
        let lower = max_per_order.unwrap_or(1);
        let max_per_account = match &self.max_per_account {
            Some(raw) => fields.parse("maxPerAccount", Some(raw), |v| {
                whole(v, lower, upper).ok_or_else(|| {
                    format!("Max per account must be a whole number from {lower} to {upper}")
                })
            }),
            None => Some(match before {
                Some(t) => t.max_per_account.clamp(lower, upper),
                None => lower,
            }),
        };
        let on_sale_at = match &self.on_sale_at {
            OnSaleAtInput::Keep => Some(before.and_then(|t| t.on_sale_at)),
            OnSaleAtInput::Clear => Some(None),
            OnSaleAtInput::Set(raw) => fields
                .parse("onSaleAt", Some(raw), |v| {
                    v.as_str()
                        .and_then(Timestamp::parse_rfc3339)
                        .ok_or_else(|| "On-sale time must be an ISO-8601 date and time".to_owned())
                })
                .map(Some),
        };
        Some(Some(Terms {
            quantity: quantity?,
            max_per_order: max_per_order?,
            max_per_account: max_per_account?,
            on_sale_at: on_sale_at?,
        }))
    }
}

/// A whole JSON number within `min..=max` (not a string; `3.0` is whole, `2.5` is not).
fn whole(value: &Value, min: i64, max: i64) -> Option<i64> {
    let n = match value.as_i64() {
        Some(n) => n,
        None => {
            let f = value.as_f64()?;
            if f.fract() != 0.0 || f.abs() > 1e15 {
                return None;
            }
            f as i64
        }
    };
    (min..=max).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(
        input: TermsInput,
        current: Current,
    ) -> Result<Option<Terms>, Vec<(String, String)>> {
        let mut fields = Fields::new();
        let terms = input.resolve(&mut fields, current);
        fields.finish(terms).map_err(|e| match e {
            ticketing_kit::ApiError::Validation(items) => items
                .into_iter()
                .map(|i| (i.field.unwrap_or_default(), i.message))
                .collect(),
            other => panic!("{other:?}"),
        })
    }

    fn quantity(q: Value) -> TermsInput {
        TermsInput {
            quantity: Some(q),
            ..TermsInput::default()
        }
    }

    #[test]
    fn nothing_given_keeps_what_there_is() {
        assert_eq!(resolve(TermsInput::default(), Current::default()), Ok(None));
        let t = Terms::from_stored(5, 2, 3, None);
        let current = Current {
            terms: Some(t),
            held: 0,
        };
        assert_eq!(resolve(TermsInput::default(), current), Ok(Some(t)));
    }

    #[test]
    fn defaults_follow_the_quantity() {
        let t = resolve(quantity(json!(5)), Current::default())
            .unwrap()
            .unwrap();
        assert_eq!((t.quantity, t.max_per_order, t.max_per_account), (5, 5, 5));
        let t = resolve(quantity(json!(500)), Current::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.quantity, t.max_per_order, t.max_per_account),
            (500, 10, 10)
        );
        // A cap alone counts the listing with one unit.
        let input = TermsInput {
            max_per_order: Some(json!(1)),
            ..TermsInput::default()
        };
        let t = resolve(input, Current::default()).unwrap().unwrap();
        assert_eq!((t.quantity, t.max_per_order, t.max_per_account), (1, 1, 1));
    }

    #[test]
    fn quantity_must_be_a_whole_number_in_range() {
        for bad in [
            json!(0),
            json!(100_001),
            json!("5"),
            json!(2.5),
            json!(true),
            json!(-1),
        ] {
            assert_eq!(
                resolve(quantity(bad.clone()), Current::default()),
                Err(vec![(
                    "quantity".into(),
                    "Quantity must be a whole number from 1 to 100000".into()
                )]),
                "{bad}"
            );
        }
        assert!(resolve(quantity(json!(3.0)), Current::default()).is_ok());
    }

    #[test]
    fn every_failing_field_is_reported() {
        let input = TermsInput {
            quantity: Some(json!(4)),
            max_per_order: Some(json!(5)),
            max_per_account: Some(json!(9)),
            on_sale_at: OnSaleAtInput::Set(json!("tomorrow")),
        };
        let errors = resolve(input, Current::default()).unwrap_err();
        assert_eq!(
            errors,
            [
                (
                    "maxPerOrder".into(),
                    "Max per order must be a whole number from 1 to 4".into()
                ),
                (
                    "maxPerAccount".into(),
                    "Max per account must be a whole number from 1 to 4".into()
                ),
                (
                    "onSaleAt".into(),
                    "On-sale time must be an ISO-8601 date and time".into()
                ),
            ]
        );
    }

    #[test]
    fn an_update_keeps_caps_clamped_and_never_goes_below_held() {
        let current = Current {
            terms: Some(Terms::from_stored(
                10,
                6,
                8,
                Some(Timestamp::from_millis(5)),
            )),
            held: 3,
        };
        let t = resolve(quantity(json!(7)), current).unwrap().unwrap();
        assert_eq!(
            t,
            Terms::from_stored(7, 6, 7, Some(Timestamp::from_millis(5)))
        );
        assert_eq!(
            resolve(quantity(json!(2)), current),
            Err(vec![(
                "quantity".into(),
                "Cannot lower quantity below 3".into()
            )])
        );
        let clear = TermsInput {
            on_sale_at: OnSaleAtInput::Clear,
            ..TermsInput::default()
        };
        assert_eq!(resolve(clear, current).unwrap().unwrap().on_sale_at, None);
    }
}
