//! `/api/orders`: the caller's orders; place, show, cancel.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::money::Cents;
use crate::status::OrderStatus;

/// The ticket of an order, as the orders service's replica knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderTicketBody {
    pub id: String,
    pub title: String,
    #[schema(value_type = f64, example = 10.99)]
    pub price: Cents,
    pub version: i64,
}

/// An order with its ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    pub id: String,
    pub user_id: String,
    pub status: OrderStatus,
    /// ISO-8601 UTC with milliseconds.
    pub expires_at: String,
    pub version: i64,
    pub ticket: OrderTicketBody,
}

/// `POST /api/orders` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder {
    #[schema(value_type = String)]
    pub ticket_id: Option<Value>,
}

impl CreateOrder {
    pub fn new(ticket_id: impl Into<String>) -> CreateOrder {
        CreateOrder {
            ticket_id: Some(Value::String(ticket_id.into())),
        }
    }
}
