//! `/api/waitlist`: a sold-out listing's waiting list (issue 30), kept by the orders
//! service. An offer is an order placed for the waiter, payable until `offerExpiresAt`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where an entry of a waiting list stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitlistStatus {
    /// In line; `position` says where.
    Waiting,
    /// Units are held for the waiter by order `orderId` until `offerExpiresAt`.
    Offered,
    /// The offer was paid.
    Purchased,
    /// The offer ran out unpaid (or the account's cap left no room for it).
    Lapsed,
    /// The waiter left the list, or declined the offer.
    Left,
}

impl WaitlistStatus {
    pub const ALL: [WaitlistStatus; 5] = [
        WaitlistStatus::Waiting,
        WaitlistStatus::Offered,
        WaitlistStatus::Purchased,
        WaitlistStatus::Lapsed,
        WaitlistStatus::Left,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WaitlistStatus::Waiting => "waiting",
            WaitlistStatus::Offered => "offered",
            WaitlistStatus::Purchased => "purchased",
            WaitlistStatus::Lapsed => "lapsed",
            WaitlistStatus::Left => "left",
        }
    }

    /// Still in line or holding an offer.
    pub fn is_live(self) -> bool {
        matches!(self, WaitlistStatus::Waiting | WaitlistStatus::Offered)
    }
}

impl std::str::FromStr for WaitlistStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<WaitlistStatus, String> {
        WaitlistStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("not a waiting-list status: {text:?}"))
    }
}

/// An entry of a waiting list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitlistEntryBody {
    pub id: String,
    pub ticket_id: String,
    pub quantity: i64,
    pub status: WaitlistStatus,
    /// 1 for the head of the line; only while `waiting`.
    pub position: Option<i64>,
    /// ISO-8601 UTC with milliseconds.
    #[schema(format = DateTime, example = "2026-12-24T18:00:00.000Z")]
    pub joined_at: String,
    /// The order holding the offered units (from `offered` on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Until when the offer can be paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub offer_expires_at: Option<String>,
}

/// `POST /api/waitlist` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinWaitlist {
    #[schema(schema_with = super::ticket_id_schema, required = true)]
    pub ticket_id: Option<Value>,
    /// Units wanted, 1 to the listing's `maxPerOrder` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub quantity: Option<Value>,
}

impl JoinWaitlist {
    pub fn new(ticket_id: impl Into<String>, quantity: i64) -> JoinWaitlist {
        JoinWaitlist {
            ticket_id: Some(Value::String(ticket_id.into())),
            quantity: Some(Value::from(quantity)),
        }
    }
}
