//! The replica of orders: the newest version of each, whatever the arrival order.

use ticketing_contracts::money::Cents;
use ticketing_contracts::{OrderId, OrderStatus, UserId};
use ticketing_store::{query, Backend, FromRow, On, Row, Tx};

#[derive(Debug, Clone)]
pub struct OrderCopy {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
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

impl FromRow for OrderCopy {
    fn from_row(row: &Row) -> Result<OrderCopy, ticketing_store::Error> {
        Ok(OrderCopy {
            id: row.get("id")?,
            user_id: row.get("user_id")?,
            status: row.parse("status")?,
            price: Cents::new(row.get("price_cents")?),
            expires_at: row.get("expires_at")?,
            version: row.get("version")?,
        })
    }
}

pub async fn find<'a>(
    on: impl Into<On<'a>>,
    id: &OrderId,
) -> Result<Option<OrderCopy>, ticketing_store::Error> {
    query("SELECT id, user_id, status, price_cents, expires_at, version FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional_as(on)
        .await
}

async fn version_of(tx: &mut Tx, id: &OrderId) -> Result<Option<i64>, ticketing_store::Error> {
    let row = query("SELECT version FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| r.get("version")).transpose()
}

/// Keep `order` (`order:created`: the whole order) unless the replica holds its version
/// or a newer one: newest wins, whatever the arrival order (decision 0023).
const UPSERT: &str = "INSERT INTO orders (id, user_id, status, price_cents, expires_at, version) \
    VALUES ($1, $2, $3, $4, $5, $6) \
    ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, status = excluded.status, \
    price_cents = excluded.price_cents, expires_at = excluded.expires_at, \
    version = excluded.version WHERE orders.version < excluded.version";

/// [`UPSERT`] for a batch on PostgreSQL, one statement: the newest copy of each order
/// (a row changes once per statement), in id order.
const UPSERT_ALL: &str = "INSERT INTO orders \
    (id, user_id, status, price_cents, expires_at, version) \
    SELECT DISTINCT ON (o->>'id') o->>'id', o->>'userId', o->>'status', \
    (o->>'price')::bigint, (o->>'expiresAt')::bigint, (o->>'version')::bigint \
    FROM jsonb_array_elements($1::jsonb) AS batch(o) \
    ORDER BY o->>'id', (o->>'version')::bigint DESC \
    ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, status = excluded.status, \
    price_cents = excluded.price_cents, expires_at = excluded.expires_at, \
    version = excluded.version WHERE orders.version < excluded.version";

/// Apply new orders (`order:created`, any order, duplicates included) newest-wins: on
/// PostgreSQL one statement for a batch, on SQLite one per order.
pub async fn apply_created_all(
    tx: &mut Tx,
    orders: &[OrderCopy],
) -> Result<(), ticketing_store::Error> {
    if tx.backend() == Backend::Postgres && orders.len() > 1 {
        let rows: Vec<serde_json::Value> = orders
            .iter()
            .map(|o| {
                serde_json::json!({
                    "id": o.id, "userId": o.user_id, "status": o.status.as_str(),
                    "price": o.price.get(), "expiresAt": o.expires_at, "version": o.version,
                })
            })
            .collect();
        query(UPSERT_ALL)
            .bind(serde_json::Value::from(rows).to_string())
            .execute(&mut *tx)
            .await?;
        return Ok(());
    }
    for order in orders {
        query(UPSERT)
            .bind(&order.id)
            .bind(&order.user_id)
            .bind(order.status.as_str())
            .bind(order.price.get())
            .bind(order.expires_at)
            .bind(order.version)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
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
