//! `/api/tickets`: list, show, create, update.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::money::Cents;

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
}

/// Create and update body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TicketInput {
    #[schema(value_type = String, example = "Concert")]
    pub title: Option<Value>,
    /// A number or numeric string, > 0, at most 1,000,000, at most two decimals.
    #[schema(value_type = f64, example = 20)]
    pub price: Option<Value>,
}

impl TicketInput {
    /// A title and a price as a person typed them (the server validates both).
    pub fn new(title: impl Into<String>, price: impl Into<String>) -> TicketInput {
        TicketInput {
            title: Some(Value::String(title.into())),
            price: Some(Value::String(price.into())),
        }
    }
}
