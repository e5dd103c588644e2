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
    #[schema(format = DateTime, example = "2026-11-24T10:00:00.000Z")]
    pub expires_at: String,
    pub version: i64,
    pub ticket: OrderTicketBody,
    /// Ours: units the order holds (absent from older servers: one).
    #[serde(default = "crate::terms::one_unit")]
    pub quantity: i64,
    /// Why a cancelled order was cancelled; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<CancelReason>,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum CancelReason {
    /// Not paid before `expiresAt` (and its grace).
    #[serde(rename = "expired")]
    Expired,
    /// `DELETE /api/orders/{orderId}`.
    #[serde(rename = "cancelled by buyer")]
    CancelledByBuyer,
    /// Paid, then cancelled by the buyer for a refund (`POST
    /// /api/orders/{orderId}/cancellation`), once the refund went through.
    #[serde(rename = "refunded")]
    Refunded,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Expired => "expired",
            CancelReason::CancelledByBuyer => "cancelled by buyer",
            CancelReason::Refunded => "refunded",
        }
    }
}

impl std::str::FromStr for CancelReason {
    type Err = String;

    fn from_str(text: &str) -> Result<CancelReason, String> {
        [
            CancelReason::Expired,
            CancelReason::CancelledByBuyer,
            CancelReason::Refunded,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
        .ok_or_else(|| format!("not a cancel reason: {text:?}"))
    }
}

/// `POST /api/orders` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder {
    #[schema(schema_with = super::ticket_id_schema, required = true)]
    pub ticket_id: Option<Value>,
    /// Ours: units to reserve, 1 to the listing's `maxPerOrder` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub quantity: Option<Value>,
}

impl CreateOrder {
    pub fn new(ticket_id: impl Into<String>) -> CreateOrder {
        CreateOrder {
            ticket_id: Some(Value::String(ticket_id.into())),
            quantity: None,
        }
    }

    /// An order for `quantity` units of a listing.
    pub fn units(ticket_id: impl Into<String>, quantity: i64) -> CreateOrder {
        CreateOrder {
            quantity: Some(Value::from(quantity)),
            ..CreateOrder::new(ticket_id)
        }
    }
}

/// Where a cancellation for a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancellationStatus {
    /// Accepted; the refund is on its way.
    Requested,
    /// The refund went through; the order is cancelled.
    Refunded,
    /// The payment provider refused the refund for good; the order stays paid.
    Failed,
}

impl CancellationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CancellationStatus::Requested => "requested",
            CancellationStatus::Refunded => "refunded",
            CancellationStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for CancellationStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<CancellationStatus, String> {
        [
            CancellationStatus::Requested,
            CancellationStatus::Refunded,
            CancellationStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| format!("not a cancellation status: {text:?}"))
    }
}

/// A paid order's cancellation for a refund (`/api/orders/{orderId}/cancellation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancellationBody {
    pub id: String,
    pub order_id: String,
    pub status: CancellationStatus,
    /// What the buyer gets back: the order's total less `fee` (a decimal, as prices).
    #[schema(value_type = f64, example = 18)]
    pub refund: Cents,
    /// What the policy keeps: `feePercent` of the total, rounded half up to the cent.
    #[schema(value_type = f64, example = 2)]
    pub fee: Cents,
    /// ISO-8601 UTC with milliseconds.
    #[schema(format = DateTime, example = "2026-11-24T10:00:00.000Z")]
    pub requested_at: String,
    /// When the refund went through (status `refunded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub refunded_at: Option<String>,
}
