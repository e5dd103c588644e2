//! `/api/tickets`: list, show, create, update.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::money::Cents;
use crate::terms::{RefundTerms, SaleTerms};

/// Page size of the list when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: i64 = 1000;
/// Response header naming the `cursor` of the next page of the list.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";
/// Longest title accepted, in characters (after trimming).
pub const MAX_TITLE_CHARS: usize = 200;

/// A ticket as the API shows it; `orderId` only while reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketBody {
    pub id: String,
    pub title: String,
    /// Decimal with at most two places, e.g. `10.99`.
    #[schema(value_type = f64, example = 10.99)]
    pub price: Cents,
    pub user_id: String,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Ours: a listing's units and caps (all absent for one unit, as the seed).
    #[serde(flatten)]
    pub terms: SaleTerms,
    /// Ours: the event's time and refund policy (both absent without them).
    #[serde(flatten)]
    pub refund: RefundTerms,
    /// Ours, with `quantity`: units neither held by an order nor sold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}

/// Create and update body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TicketInput {
    #[schema(schema_with = super::title_schema, required = true)]
    pub title: Option<Value>,
    /// Above 0, at most 1,000,000, at most two decimals: a number, or the same as a
    /// string (the seed's client sends `"10.99"`).
    #[schema(schema_with = price_schema, required = true)]
    pub price: Option<Value>,
    /// Ours: units listed, a whole number from 1 to 100,000. On update, absent keeps
    /// the listing's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub quantity: Option<Value>,
    /// Ours: most units per order, 1 to `quantity` (default: `quantity`, at most 10).
    #[serde(
        default,
        rename = "maxPerOrder",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub max_per_order: Option<Value>,
    /// Ours: most units per account, `maxPerOrder` to `quantity` (default:
    /// `maxPerOrder`).
    #[serde(
        default,
        rename = "maxPerAccount",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub max_per_account: Option<Value>,
    /// Ours: when the sale opens, ISO-8601 (`null` on update: on sale now).
    #[serde(default, rename = "onSaleAt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub on_sale_at: Option<Value>,
    /// Ours: when the event takes place, ISO-8601, in the future (`null` on update:
    /// none, which needs `refundPolicy` gone too). On update, absent keeps the listing's.
    #[serde(default, rename = "eventAt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub event_at: Option<Value>,
    /// Ours: `{cutoffHours: 0–8760, feePercent: 0–100}`, buyers may cancel paid orders
    /// until `cutoffHours` before `eventAt` (needed) and get the total back less
    /// `feePercent` (`null` on update: no more cancellations). On update, absent keeps the
    /// listing's.
    #[serde(
        default,
        rename = "refundPolicy",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<crate::terms::RefundPolicy>)]
    pub refund_policy: Option<Value>,
}

fn price_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
    let any_of = AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0))
                .maximum(Some(1_000_000.0))
                .multiple_of(Some(0.01))
                .examples([serde_json::json!(20)]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(super::patterns::PRICE))
                .examples([serde_json::json!("10.99")]),
        )
        .description(Some(
            "Above 0, at most 1,000,000, at most two decimals: a number, or the same as a \
             string (the seed's client sends `\"10.99\"`).",
        ))
        .build();
    Schema::AnyOf(any_of)
}

impl TicketInput {
    /// A title and a price as a person typed them (the server validates both).
    pub fn new(title: impl Into<String>, price: impl Into<String>) -> TicketInput {
        TicketInput {
            title: Some(Value::String(title.into())),
            price: Some(Value::String(price.into())),
            ..TicketInput::default()
        }
    }
}
