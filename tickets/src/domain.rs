//! Ticket input, parsed.

use serde_json::Value;
use ticketing_contracts::money::Cents;
use ticketing_contracts::terms::{
    Percent, RefundPolicy, RefundTerms, SaleTerms, DEFAULT_MAX_PER_ORDER, MAX_CUTOFF_HOURS,
    MAX_QUANTITY,
};
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

/// A listing's event time and refund policy, resolved: a policy only with an event time
/// (made by [`RefundInput::resolve`], or read back from a row one was written to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refund {
    pub event_at: Option<Timestamp>,
    pub policy: Option<RefundPolicy>,
}

impl Refund {
    /// As a body or an event carries them (both absent on a listing without them).
    pub fn to_contract(self) -> RefundTerms {
        RefundTerms {
            event_at: self.event_at.map(Timestamp::to_rfc3339),
            refund_policy: self.policy,
        }
    }

    /// The columns' values: event time (ms), cutoff hours, fee in basis points.
    pub fn columns(self) -> [Option<i64>; 3] {
        [
            self.event_at.map(Timestamp::as_millis),
            self.policy.map(|p| p.cutoff_hours),
            self.policy.map(|p| p.fee_percent.basis_points()),
        ]
    }

    /// As stored by [`Refund::columns`].
    pub fn from_columns(event_at: Option<i64>, cutoff: Option<i64>, fee_bp: Option<i64>) -> Refund {
        Refund {
            event_at: event_at.map(Timestamp::from_millis),
            policy: cutoff.zip(fee_bp).map(|(cutoff_hours, bp)| RefundPolicy {
                cutoff_hours,
                fee_percent: Percent::from_basis_points(bp),
            }),
        }
    }
}

/// What a request says of one of `eventAt` and `refundPolicy`.
#[derive(Debug, Clone, Default)]
pub enum Given {
    /// Absent: the listing's stays (none on a new one).
    #[default]
    Keep,
    /// `null` on update: none from now on.
    Clear,
    Set(Value),
}

impl Given {
    /// A field of a body: `null` clears it only where `null_clears` (an update).
    pub fn of(raw: Option<&Value>, null_clears: bool) -> Given {
        match raw {
            None => Given::Keep,
            Some(Value::Null) if null_clears => Given::Clear,
            Some(Value::Null) => Given::Keep,
            Some(value) => Given::Set(value.clone()),
        }
    }
}

/// The `eventAt` and `refundPolicy` of a create or update body, as sent.
#[derive(Debug, Clone, Default)]
pub struct RefundInput {
    pub event_at: Given,
    pub policy: Given,
}

impl RefundInput {
    /// The listing's event time and policy after this input (`current`: the listing's
    /// before it), `None` when a field failed (recorded in `fields`). A new event time
    /// must be after `now` (the listing's own, sent back, stands); a policy needs an
    /// event time, given or kept.
    pub fn resolve(&self, fields: &mut Fields, current: Refund, now: Timestamp) -> Option<Refund> {
        let event_at = match &self.event_at {
            Given::Keep => Some(current.event_at),
            Given::Clear => Some(None),
            Given::Set(raw) => fields
                .parse("eventAt", Some(raw), |v| {
                    let at = v
                        .as_str()
                        .and_then(Timestamp::parse_rfc3339)
                        .ok_or("Event time must be an ISO-8601 date and time")?;
                    // The listing's own time sent back unchanged (an edit form) stands.
                    if at <= now && Some(at) != current.event_at {
                        return Err("Event time must be in the future".to_owned());
                    }
                    Ok(at)
                })
                .map(Some),
        };
        let policy = match &self.policy {
            Given::Keep => Some(current.policy),
            Given::Clear => Some(None),
            Given::Set(raw) => fields
                .parse("refundPolicy", Some(raw), parse_policy)
                .map(Some),
        };
        let (event_at, policy) = (event_at?, policy?);
        if policy.is_some() && event_at.is_none() {
            fields.parse("refundPolicy", Some(&Value::Bool(true)), |_| {
                Err::<(), _>("A refund policy needs the event's time (eventAt)".to_owned())
            });
            return None;
        }
        Some(Refund { event_at, policy })
    }
}

fn parse_policy(raw: &Value) -> Result<RefundPolicy, String> {
    let object = raw
        .as_object()
        .ok_or("Refund policy must be an object {cutoffHours, feePercent}")?;
    let cutoff_hours = object
        .get("cutoffHours")
        .and_then(|v| whole(v, 0, MAX_CUTOFF_HOURS))
        .ok_or_else(|| {
            format!("Cutoff hours must be a whole number from 0 to {MAX_CUTOFF_HOURS}")
        })?;
    let fee_percent = object
        .get("feePercent")
        .and_then(Percent::parse)
        .ok_or("Fee percent must be a number from 0 to 100 with at most 2 decimals")?;
    Ok(RefundPolicy {
        cutoff_hours,
        fee_percent,
    })
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

    fn refund(input: RefundInput, current: Refund) -> Result<Refund, Vec<(String, String)>> {
        let mut fields = Fields::new();
        let now = Timestamp::from_millis(1_000_000);
        let refund = input.resolve(&mut fields, current, now);
        fields.finish(refund).map_err(|e| match e {
            ticketing_kit::ApiError::Validation(items) => items
                .into_iter()
                .map(|i| (i.field.unwrap_or_default(), i.message))
                .collect(),
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn a_policy_needs_a_future_event_time() {
        let policy = json!({"cutoffHours": 48, "feePercent": 10});
        let input = |event_at: Given, policy: Given| RefundInput { event_at, policy };
        assert_eq!(
            refund(
                input(Given::Keep, Given::Set(policy.clone())),
                Refund::default()
            ),
            Err(vec![(
                "refundPolicy".into(),
                "A refund policy needs the event's time (eventAt)".into()
            )])
        );
        let later = json!("1970-01-02T00:00:00.000Z");
        let r = refund(
            input(Given::Set(later.clone()), Given::Set(policy)),
            Refund::default(),
        )
        .unwrap();
        assert_eq!(r.event_at, Some(Timestamp::from_millis(86_400_000)));
        assert_eq!(r.policy.unwrap().cutoff_hours, 48);
        // Kept on update; an event time cleared under a policy is refused.
        assert_eq!(refund(RefundInput::default(), r), Ok(r));
        assert!(refund(input(Given::Clear, Given::Keep), r).is_err());
        assert_eq!(
            refund(input(Given::Clear, Given::Clear), r),
            Ok(Refund::default())
        );
        let past = json!("1970-01-01T00:00:00.000Z");
        assert_eq!(
            refund(input(Given::Set(past), Given::Keep), Refund::default()),
            Err(vec![(
                "eventAt".into(),
                "Event time must be in the future".into()
            )])
        );
        for bad in [
            json!({"cutoffHours": 8761, "feePercent": 1}),
            json!({"cutoffHours": 1, "feePercent": 101}),
            json!({"cutoffHours": 1.5, "feePercent": 1}),
            json!({"feePercent": 1}),
            json!(48),
        ] {
            let errors = refund(
                input(Given::Set(later.clone()), Given::Set(bad.clone())),
                Refund::default(),
            )
            .unwrap_err();
            assert_eq!(errors[0].0, "refundPolicy", "{bad}");
        }
    }
}
