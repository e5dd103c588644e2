//! `/api/payments`: pay an order.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A payment of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentBody {
    pub id: String,
    pub order_id: String,
    /// The provider's id of the charge (`ch_...`).
    pub stripe_id: String,
    /// `succeeded`, or `refunded` once the charge was given back.
    pub status: PaymentStatus,
    /// When the charge was refunded (ISO-8601 UTC); absent unless refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<String>,
}

/// Where a recorded payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum PaymentStatus {
    #[serde(rename = "succeeded")]
    Succeeded,
    /// Given back: the payment reached an order that was already cancelled.
    #[serde(rename = "refunded")]
    Refunded,
}

/// `POST /api/payments` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePayment {
    /// The card source: a Stripe token (`tok_...`).
    #[schema(schema_with = super::token_schema, required = true)]
    pub token: Option<Value>,
    #[schema(schema_with = super::order_id_schema, required = true)]
    pub order_id: Option<Value>,
}

impl CreatePayment {
    pub fn new(order_id: impl Into<String>, token: impl Into<String>) -> CreatePayment {
        CreatePayment {
            token: Some(Value::String(token.into())),
            order_id: Some(Value::String(order_id.into())),
        }
    }
}
