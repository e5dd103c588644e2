//! `/api/queue/{ticketId}`: the fair on-sale queue of a listing with `onSaleAt` (issue 30),
//! kept by the orders service. Joins open 30 minutes before the sale; those who join
//! before it are drawn in random order, later ones queue behind them in arrival order;
//! from `onSaleAt` the head is admitted, as many at a time as units are free, and an
//! admission lets its account place one order within 120 s. The admission is kept by the
//! server (account and listing): a client carries nothing, and `POST /api/orders` on a
//! queued listing joins the queue itself and answers 429 until admitted.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long before `onSaleAt` the queue opens.
pub const OPENS_BEFORE_SECONDS: i64 = 30 * 60;
/// How long an admission lasts.
pub const ADMISSION_SECONDS: i64 = 120;

/// Where an account stands in a listing's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QueueStatus {
    /// In line: before the sale without a place yet (`position` null), then with one.
    Waiting,
    /// May place one order until `admittedUntil`.
    Admitted,
    /// The admission placed its order.
    Used,
    /// The admission ran out unused.
    Expired,
    /// In line, but nothing is left to sell (units may still come back).
    SoldOut,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Waiting => "waiting",
            QueueStatus::Admitted => "admitted",
            QueueStatus::Used => "used",
            QueueStatus::Expired => "expired",
            QueueStatus::SoldOut => "sold-out",
        }
    }
}

/// An account's place in a listing's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueBody {
    pub status: QueueStatus,
    /// 1 for the next admitted; null before the sale (the draw is made at `onSaleAt`)
    /// and once admitted.
    pub position: Option<i64>,
    /// Estimated seconds until admitted, at the configured admission rate.
    pub eta_seconds: Option<i64>,
    /// When the sale opens (the listing's `onSaleAt`), ISO-8601 UTC with milliseconds.
    #[schema(format = DateTime)]
    pub opens_at: String,
    /// While admitted: until when the order can be placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub admitted_until: Option<String>,
}

/// The `queue` member of a 429 answer to `POST /api/orders` without an admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuePlace {
    pub position: Option<i64>,
    pub eta_seconds: Option<i64>,
}
