//! The seed's six subjects and ours, and their payloads, JSON-compatible with the seed
//! (`../shared/spec/events.md`). Prices travel as decimal numbers (`price`) and, added
//! by us, as exact integer cents (`priceCents`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::{CancellationId, OrderId, PassId, PaymentId, TicketId, UserId};
use crate::money::Cents;
use crate::status::OrderStatus;
use crate::terms::{one_unit, RefundTerms, SaleTerms};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subject {
    #[serde(rename = "ticket:created")]
    TicketCreated,
    #[serde(rename = "ticket:updated")]
    TicketUpdated,
    #[serde(rename = "order:created")]
    OrderCreated,
    #[serde(rename = "order:cancelled")]
    OrderCancelled,
    #[serde(rename = "expiration:complete")]
    ExpirationComplete,
    #[serde(rename = "payment:created")]
    PaymentCreated,
    /// Ours, not the seed's: a charge given back (a payment that reached an order
    /// already cancelled).
    #[serde(rename = "payment:refunded")]
    PaymentRefunded,
    /// Ours: units offered to a waiting list's head (an order placed for the waiter).
    #[serde(rename = "waitlist:offered")]
    WaitlistOffered,
    /// Ours: sessions ended before their tokens expire (sign-out, a password change).
    #[serde(rename = "session:revoked")]
    SessionRevoked,
    /// Ours: a buyer asked to cancel a paid order for a refund (the saga's first step).
    #[serde(rename = "order:cancel-requested")]
    OrderCancelRequested,
    /// Ours: the provider refused a cancellation's refund for good.
    #[serde(rename = "payment:refund-failed")]
    PaymentRefundFailed,
    /// Ours: an order paid in time, decided by orders (a late payment completes nothing).
    #[serde(rename = "order:completed")]
    OrderCompleted,
    /// Ours: an entry pass issued (or reissued with a new epoch) for one unit.
    #[serde(rename = "pass:issued")]
    PassIssued,
    /// Ours: a pass's code no longer admits (reissued, refunded).
    #[serde(rename = "pass:revoked")]
    PassRevoked,
    /// Ours: a pass admitted at a gate.
    #[serde(rename = "checkin:recorded")]
    CheckinRecorded,
}

impl Subject {
    pub const ALL: [Subject; 15] = [
        Subject::TicketCreated,
        Subject::TicketUpdated,
        Subject::OrderCreated,
        Subject::OrderCancelled,
        Subject::ExpirationComplete,
        Subject::PaymentCreated,
        Subject::PaymentRefunded,
        Subject::WaitlistOffered,
        Subject::SessionRevoked,
        Subject::OrderCancelRequested,
        Subject::PaymentRefundFailed,
        Subject::OrderCompleted,
        Subject::PassIssued,
        Subject::PassRevoked,
        Subject::CheckinRecorded,
    ];

    /// The seed's subject name, e.g. `ticket:created`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::TicketCreated => "ticket:created",
            Subject::TicketUpdated => "ticket:updated",
            Subject::OrderCreated => "order:created",
            Subject::OrderCancelled => "order:cancelled",
            Subject::ExpirationComplete => "expiration:complete",
            Subject::PaymentCreated => "payment:created",
            Subject::PaymentRefunded => "payment:refunded",
            Subject::WaitlistOffered => "waitlist:offered",
            Subject::SessionRevoked => "session:revoked",
            Subject::OrderCancelRequested => "order:cancel-requested",
            Subject::PaymentRefundFailed => "payment:refund-failed",
            Subject::OrderCompleted => "order:completed",
            Subject::PassIssued => "pass:issued",
            Subject::PassRevoked => "pass:revoked",
            Subject::CheckinRecorded => "checkin:recorded",
        }
    }

    pub fn parse(name: &str) -> Option<Subject> {
        Subject::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The consumer groups (the seed's queue groups): one per service.
pub mod groups {
    pub const AUTH: &str = "auth-service";
    pub const TICKETS: &str = "tickets-service";
    pub const ORDERS: &str = "orders-service";
    pub const PAYMENTS: &str = "payments-service";
    pub const EXPIRATION: &str = "expiration-service";
    pub const WEBHOOKS: &str = "webhooks-service";
    pub const CHECKIN: &str = "checkin-service";
}

/// A payload with its subject.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    const SUBJECT: Subject;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketCreated {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub user_id: UserId,
    pub version: i64,
    /// Ours: a listing's units and caps (all absent for one unit, as the seed).
    #[serde(flatten)]
    pub terms: SaleTerms,
    /// Ours: the event's time and refund policy (both absent without them).
    #[serde(flatten)]
    pub refund: RefundTerms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketUpdated {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub user_id: UserId,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    /// Ours: a listing's units and caps (all absent for one unit, as the seed).
    #[serde(flatten)]
    pub terms: SaleTerms,
    /// Ours: the event's time and refund policy (both absent without them).
    #[serde(flatten)]
    pub refund: RefundTerms,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreatedTicket {
    pub id: TicketId,
    pub price: Cents,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub id: OrderId,
    pub status: OrderStatus,
    pub user_id: UserId,
    /// ISO-8601 UTC with milliseconds.
    pub expires_at: String,
    /// Ours, not the seed's: until when the order holds its ticket, `expiresAt` plus
    /// the grace in which a payment made before `expiresAt` may still complete it. The
    /// expiration service fires then. Absent from older producers, whose grace only
    /// the orders service knows: a consumer takes `expiresAt`, the earliest the
    /// reservation can end, and orders answers an `expiration:complete` that comes
    /// before the order's own `reserved_until` with a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_until: Option<String>,
    pub version: i64,
    pub ticket: OrderCreatedTicket,
    /// Ours: units the order holds (absent from older producers: one).
    #[serde(default = "one_unit")]
    pub quantity: i64,
    /// Ours: the waiting-list entry this order was offered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waitlist_entry_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    pub id: TicketId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub id: OrderId,
    pub version: i64,
    pub ticket: TicketRef,
    /// Ours: why, when the order had been paid (`refunded`: a cancellation's refund
    /// went through). Absent for a reservation cancelled or expired before payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpirationComplete {
    pub order_id: OrderId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCreated {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub stripe_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// The payment refunded.
    pub id: PaymentId,
    pub order_id: OrderId,
    pub stripe_id: String,
    /// Ours: cents given back (absent from older producers: the whole charge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<i64>,
    /// Ours: the cancellation this refund settles (absent: a late payment's refund).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_id: Option<CancellationId>,
}

/// A buyer's cancellation of paid order `orderId`: payments refunds `refundCents` of
/// the charge and keeps `feeCents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelRequested {
    /// The cancellation (its id is the refund's idempotency key).
    pub id: CancellationId,
    pub order_id: OrderId,
    pub user_id: UserId,
    pub refund_cents: i64,
    pub fee_cents: i64,
}

/// The provider refused cancellation `cancellationId`'s refund for good: the order
/// stays paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefundFailed {
    pub cancellation_id: CancellationId,
    pub order_id: OrderId,
    pub reason: String,
}

/// Order `id` is paid and complete: its buyer holds `quantity` units of `ticket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    pub id: OrderId,
    pub version: i64,
    pub user_id: UserId,
    pub ticket: TicketRef,
    #[serde(default = "one_unit")]
    pub quantity: i64,
}

/// Pass `id` admits unit `unit` (1-based) of order `orderId` while its epoch is `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassIssued {
    pub id: PassId,
    pub order_id: OrderId,
    pub ticket_id: TicketId,
    pub user_id: UserId,
    pub unit: i64,
    pub epoch: i64,
}

/// Codes of pass `id` up to epoch `epoch` admit no more (`reissued`, `refunded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassRevoked {
    pub id: PassId,
    pub epoch: i64,
    pub reason: String,
}

/// Pass `passId` was admitted at a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckinRecorded {
    pub pass_id: PassId,
    pub ticket_id: TicketId,
    pub device_id: String,
    /// ISO-8601 UTC with milliseconds: when the device scanned it.
    pub checked_in_at: String,
}

/// Units held for a waiting list's head by order `orderId`, payable until `expiresAt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitlistOffered {
    /// The waiting-list entry.
    pub id: String,
    pub ticket_id: TicketId,
    pub user_id: UserId,
    pub order_id: OrderId,
    pub quantity: i64,
    /// ISO-8601 UTC with milliseconds.
    pub expires_at: String,
}

/// Sessions of user `userId` that no longer count, though their tokens have not expired:
/// every service treats a token carrying one of `sessionIds` (its `sid` claim) as
/// anonymous until `expiresAt`, the latest expiry among those tokens, and may forget
/// them after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRevoked {
    pub user_id: UserId,
    pub session_ids: Vec<String>,
    /// ISO-8601 UTC with milliseconds.
    pub expires_at: String,
}

/// Each payload type is published on the subject of the same name.
macro_rules! published_on_its_subject {
    ($($event:ident),* $(,)?) => {
        $(impl Event for $event {
            const SUBJECT: Subject = Subject::$event;
        })*
    };
}
published_on_its_subject!(
    TicketCreated,
    TicketUpdated,
    OrderCreated,
    OrderCancelled,
    ExpirationComplete,
    PaymentCreated,
    PaymentRefunded,
    WaitlistOffered,
    SessionRevoked,
    OrderCancelRequested,
    PaymentRefundFailed,
    OrderCompleted,
    PassIssued,
    PassRevoked,
    CheckinRecorded
);
