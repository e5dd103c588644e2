//! `/api/webhooks`: a seller's endpoints, their deliveries, and replays.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::events::Subject;

/// Longest endpoint URL accepted, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// The subjects an endpoint may ask for: the marketplace's events (a session's
/// revocation is its account's own affair, never a seller's; a pass's revocation names
/// no order or listing to route it by).
pub const SUBJECTS: [Subject; 13] = [
    Subject::TicketCreated,
    Subject::TicketUpdated,
    Subject::OrderCreated,
    Subject::OrderCancelled,
    Subject::ExpirationComplete,
    Subject::PaymentCreated,
    Subject::PaymentRefunded,
    Subject::WaitlistOffered,
    Subject::OrderCancelRequested,
    Subject::PaymentRefundFailed,
    Subject::OrderCompleted,
    Subject::PassIssued,
    Subject::CheckinRecorded,
];

/// Deliveries per page of `GET /api/webhooks/{id}/deliveries`.
pub const DELIVERIES_PAGE: i64 = 100;

/// An endpoint. `secret` (`whsec_…`) is shown once, in the answer to its creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookBody {
    pub id: String,
    pub url: String,
    /// The subjects it receives, e.g. `order:created`.
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// ISO-8601 UTC.
    pub created_at: String,
    /// When it answered 410 Gone and was disabled; absent while enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
}

/// `POST /api/webhooks` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhook {
    /// `http(s)://…`, at most 2,048 characters; no private or loopback host.
    #[schema(value_type = String, required = true)]
    pub url: Option<Value>,
    /// Subjects to receive (at least one), e.g. `["order:created", "payment:created"]`.
    #[schema(value_type = Vec<String>, required = true)]
    pub events: Option<Value>,
}

impl CreateWebhook {
    pub fn new(url: impl Into<String>, events: &[&str]) -> CreateWebhook {
        CreateWebhook {
            url: Some(Value::String(url.into())),
            events: Some(Value::Array(
                events
                    .iter()
                    .map(|e| Value::String((*e).to_owned()))
                    .collect(),
            )),
        }
    }
}

/// Where one event stands for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet answered 2xx: waiting for its turn or for its next attempt.
    Pending,
    Delivered,
    /// Given up after the retry period.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

/// One event queued for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryBody {
    /// Increasing in queueing order; the list's `cursor` and a replay's `fromSeq`.
    pub seq: i64,
    /// The event's id: the `webhook-id` header and the body's `id`.
    pub event_id: String,
    pub subject: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

/// `POST /api/webhooks/{id}/replay` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayWebhook {
    /// Resend every delivery from this `seq` on.
    #[schema(value_type = i64, required = true, minimum = 0)]
    pub from_seq: Option<Value>,
}

/// `POST /api/webhooks/{id}/replay` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayAccepted {
    /// Deliveries queued again.
    pub queued: i64,
}
