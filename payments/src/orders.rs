//! The replica of orders: the newest version of each, whatever the arrival order.

use ticketing_bus::HandlerError;
use ticketing_contracts::events::OrderCreated;
use ticketing_contracts::money::Cents;
use ticketing_contracts::time::parse_millis;
use ticketing_contracts::{OrderId, OrderStatus, UserId};
use ticketing_kit::replica::{CopyOf, Replicated};
use ticketing_store::{query, On, Query, Tx};

#[derive(Debug, Clone)]
pub struct OrderCopy {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    /// What the order costs: its ticket's price times its units.
    pub price: Cents,
    pub expires_at: i64,
    pub version: i64,
}

impl OrderCopy {
    pub fn is_cancelled(&self) -> bool {
        self.status == OrderStatus::Cancelled
    }

    /// Lazy expiry: past `expiresAt` an order cannot be paid, event or not.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

ticketing_kit::from_row!(|row| OrderCopy {
    id,
    user_id,
    status: row.parse("status")?,
    price: Cents::new(row.get("price_cents")?),
    expires_at,
    version,
});

pub async fn find<'a>(
    on: impl Into<On<'a>>,
    id: &OrderId,
) -> Result<Option<OrderCopy>, ticketing_store::Error> {
    query("SELECT id, user_id, status, price_cents, expires_at, version FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional_as(on)
        .await
}

/// An order with the charge that paid it, if one did: what a payment decides on, in one
/// read.
#[derive(Debug, Clone)]
pub struct Payable {
    pub order: OrderCopy,
    /// The provider's id of the charge recorded for the order.
    pub paid_by: Option<String>,
}

/// The columns of a [`Payable`], of the replica's `orders o`.
pub const PAYABLE_COLUMNS: &str = "o.id, o.user_id, o.status, o.price_cents, o.expires_at, \
    o.version, (SELECT p.stripe_id FROM payments p WHERE p.order_id = o.id) AS paid_by";

ticketing_kit::from_row!(|row| Payable {
    order: OrderCopy::from_row(row)?,
    paid_by,
});

pub async fn find_payable<'a>(
    on: impl Into<On<'a>>,
    id: &OrderId,
) -> Result<Option<Payable>, ticketing_store::Error> {
    query(&format!(
        "SELECT {PAYABLE_COLUMNS} FROM orders o WHERE o.id = $1"
    ))
    .bind(id)
    .fetch_optional_as(on)
    .await
}

/// Whether the replica holds order `id` (it may wait for it: decision 0029).
pub async fn exists<'a>(
    on: impl Into<On<'a>>,
    id: &OrderId,
) -> Result<bool, ticketing_store::Error> {
    Ok(query("SELECT 1 AS one FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(on)
        .await?
        .is_some())
}

async fn version_of(tx: &mut Tx, id: &OrderId) -> Result<Option<i64>, ticketing_store::Error> {
    let row = query("SELECT version FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| r.get("version")).transpose()
}

/// `order:created` carries the whole order: kept unless the replica holds its version or
/// a newer one, newest wins whatever the arrival order (decision 0023).
impl Replicated for OrderCopy {
    const UPSERT: &'static str =
        "INSERT INTO orders (id, user_id, status, price_cents, expires_at, version) \
        VALUES ($1, $2, $3, $4, $5, $6) \
        ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, status = excluded.status, \
        price_cents = excluded.price_cents, expires_at = excluded.expires_at, \
        version = excluded.version WHERE orders.version < excluded.version";

    const UPSERT_ALL: &'static str = "INSERT INTO orders \
        (id, user_id, status, price_cents, expires_at, version) \
        SELECT DISTINCT ON (o->>'id') o->>'id', o->>'userId', o->>'status', \
        (o->>'price')::bigint, (o->>'expiresAt')::bigint, (o->>'version')::bigint \
        FROM jsonb_array_elements($1::jsonb) AS batch(o) \
        ORDER BY o->>'id', (o->>'version')::bigint DESC \
        ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, status = excluded.status, \
        price_cents = excluded.price_cents, expires_at = excluded.expires_at, \
        version = excluded.version WHERE orders.version < excluded.version";

    fn bind<'q>(&self, upsert: Query<'q>) -> Query<'q> {
        upsert
            .bind(&self.id)
            .bind(&self.user_id)
            .bind(self.status.as_str())
            .bind(self.price.get())
            .bind(self.expires_at)
            .bind(self.version)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "userId": self.user_id, "status": self.status.as_str(),
            "price": self.price.get(), "expiresAt": self.expires_at, "version": self.version,
        })
    }
}

impl CopyOf<OrderCreated> for OrderCopy {
    fn copy_of(o: OrderCreated) -> Result<OrderCopy, HandlerError> {
        let expires_at = parse_millis(&o.expires_at).ok_or_else(|| {
            HandlerError::Poison(format!("unreadable expiresAt {:?}", o.expires_at))
        })?;
        // What the buyer pays: the ticket's price for each unit.
        let price = o.ticket.price.times(o.quantity).ok_or_else(|| {
            HandlerError::Poison(format!("{} units of {}", o.quantity, o.ticket.price))
        })?;
        Ok(OrderCopy {
            id: o.id,
            user_id: o.user_id,
            status: o.status,
            price,
            expires_at,
            version: o.version,
        })
    }
}

/// The order cancelled at `version` (`order:cancelled`), unless the replica holds that
/// version or a newer one. The event is a delta — a new status, without the order's
/// buyer and price — so it needs the order: false while its `order:created` has not
/// arrived (the caller retries; an order is cancelled once, so at most one event per
/// order ever waits).
pub async fn apply_cancelled(
    tx: &mut Tx,
    id: &OrderId,
    version: i64,
) -> Result<bool, ticketing_store::Error> {
    let written =
        query("UPDATE orders SET status = $1, version = $2 WHERE id = $3 AND version < $2")
            .bind(OrderStatus::Cancelled.as_str())
            .bind(version)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    if written == 1 {
        return Ok(true);
    }
    // Missed: stale if the replica holds this version or a newer one. A row at an older
    // version was inserted after the update looked (PostgreSQL reads each statement
    // anew): not applied yet, so not done either — retried, it applies.
    Ok(version_of(tx, id)
        .await?
        .is_some_and(|held| held >= version))
}
