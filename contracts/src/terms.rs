//! A listing's units and the rules of their sale (issue 30, "drop day").
//!
//! A ticket listed the seed's way is one unit, sold to one order: it carries none of
//! these fields, in its body and in its events. A listing created (or updated) with any
//! of them has `quantity` units and carries all four from then on, the caps resolved to
//! their defaults by the tickets service.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most units one listing may have.
pub const MAX_QUANTITY: i64 = 100_000;
/// `maxPerOrder` when not given: this, or `quantity` when fewer.
pub const DEFAULT_MAX_PER_ORDER: i64 = 10;

/// The sale terms a ticket's body and events carry (all absent: one unit, as the seed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaleTerms {
    /// Units listed, 1 to 100,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// Most units one order may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_order: Option<i64>,
    /// Most units one account may hold, be offered or have bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_account: Option<i64>,
    /// When the sale opens (ISO-8601 UTC with milliseconds); absent: on sale now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, example = "2026-12-24T18:00:00.000Z")]
    pub on_sale_at: Option<String>,
}

impl SaleTerms {
    /// Units listed (a ticket without terms is one).
    pub fn units(&self) -> i64 {
        self.quantity.unwrap_or(1)
    }

    /// Most units one order may take.
    pub fn per_order(&self) -> i64 {
        self.max_per_order.unwrap_or(1)
    }

    /// Most units one account may have.
    pub fn per_account(&self) -> i64 {
        self.max_per_account.unwrap_or(1)
    }

    /// Was the ticket listed with units (any of the terms given)?
    pub fn is_counted(&self) -> bool {
        self.quantity.is_some()
    }
}

/// `quantity` of an order or event that does not say it: one unit.
pub fn one_unit() -> i64 {
    1
}
