//! The replica of orders, applied in version order.

use ticketing_bus::replica::{self, VersionCheck};
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

/// A new order (`order:created`, version 0).
pub async fn apply_created(
    tx: &mut Tx,
    order: &OrderCopy,
) -> Result<VersionCheck, ticketing_store::Error> {
    if order.version == 0 {
        let written = query(
            "INSERT INTO orders (id, user_id, status, price_cents, expires_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&order.id)
        .bind(&order.user_id)
        .bind(order.status.as_str())
        .bind(order.price.get())
        .bind(order.expires_at)
        .bind(order.version)
        .execute(&mut *tx)
        .await?;
        if written == 1 {
            return Ok(VersionCheck::Apply);
        }
    }
    Ok(replica::missed(
        version_of(tx, &order.id).await?,
        order.version,
    ))
}

/// [`apply_created`] for several new orders, in order: what each one did. On PostgreSQL
/// the common case is one statement for the lot; the orders it did not insert (a
/// duplicate, a version other than 0) are then applied one by one after it.
pub async fn apply_created_all(
    tx: &mut Tx,
    orders: &[OrderCopy],
) -> Result<Vec<VersionCheck>, ticketing_store::Error> {
    let mut inserted = std::collections::HashSet::new();
    if tx.backend() == Backend::Postgres && orders.len() > 1 {
        const INSERT: &str = "INSERT INTO orders \
            (id, user_id, status, price_cents, expires_at, version) \
            SELECT o->>'id', o->>'userId', o->>'status', (o->>'price')::bigint, \
            (o->>'expiresAt')::bigint, 0 \
            FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS batch(o, n) \
            WHERE (o->>'version')::bigint = 0 ORDER BY n \
            ON CONFLICT (id) DO NOTHING RETURNING id";
        let rows: Vec<serde_json::Value> = orders
            .iter()
            .map(|o| {
                serde_json::json!({
                    "id": o.id, "userId": o.user_id, "status": o.status.as_str(),
                    "price": o.price.get(), "expiresAt": o.expires_at, "version": o.version,
                })
            })
            .collect();
        let ids: Vec<String> = query(INSERT)
            .bind(serde_json::Value::from(rows).to_string())
            .scalars(&mut *tx)
            .await?;
        inserted.extend(ids);
    }
    let mut checks = Vec::with_capacity(orders.len());
    for order in orders {
        // `remove`: an order the batch holds twice was inserted once.
        checks.push(if inserted.remove(order.id.as_str()) {
            VersionCheck::Apply
        } else {
            apply_created(tx, order).await?
        });
    }
    Ok(checks)
}

/// An order cancelled at `version` (`order:cancelled`).
pub async fn apply_cancelled(
    tx: &mut Tx,
    id: &OrderId,
    version: i64,
) -> Result<VersionCheck, ticketing_store::Error> {
    let written =
        query("UPDATE orders SET status = $1, version = $2 WHERE id = $3 AND version = $2 - 1")
            .bind(OrderStatus::Cancelled.as_str())
            .bind(version)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    if written == 1 {
        return Ok(VersionCheck::Apply);
    }
    Ok(replica::missed(version_of(tx, id).await?, version))
}
