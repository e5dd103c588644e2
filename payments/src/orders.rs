//! The replica of orders, applied in version order.

use ticketing_shared::events::replica::{self, VersionCheck};
use ticketing_shared::events::status;
use ticketing_shared::money::Cents;
use ticketing_shared::store::{query, On, Tx};

#[derive(Debug, Clone)]
pub struct OrderCopy {
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub price: Cents,
    pub expires_at: i64,
    pub version: i64,
}

impl OrderCopy {
    pub fn is_cancelled(&self) -> bool {
        self.status == status::CANCELLED
    }

    /// Lazy expiry: past `expiresAt` an order cannot be paid, event or not.
    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

pub async fn find<'a>(on: impl Into<On<'a>>, id: &str) -> Result<Option<OrderCopy>, sqlx::Error> {
    let row = query(
        "SELECT id, user_id, status, price_cents, expires_at, version FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(on)
    .await?;
    Ok(row.map(|r| OrderCopy {
        id: r.get("id"),
        user_id: r.get("user_id"),
        status: r.get("status"),
        price: Cents::new(r.get("price_cents")),
        expires_at: r.get("expires_at"),
        version: r.get("version"),
    }))
}

async fn version_of(tx: &mut Tx, id: &str) -> Result<Option<i64>, sqlx::Error> {
    let row = query("SELECT version FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(|r| r.get("version")))
}

/// A new order (`order:created`, version 0).
pub async fn apply_created(tx: &mut Tx, order: &OrderCopy) -> Result<VersionCheck, sqlx::Error> {
    let check = replica::check(version_of(tx, &order.id).await?, order.version);
    if check == VersionCheck::Apply {
        query(
            "INSERT INTO orders (id, user_id, status, price_cents, expires_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&order.id)
        .bind(&order.user_id)
        .bind(&order.status)
        .bind(order.price.get())
        .bind(order.expires_at)
        .bind(order.version)
        .execute(&mut *tx)
        .await?;
    }
    Ok(check)
}

/// An order cancelled at `version` (`order:cancelled`).
pub async fn apply_cancelled(
    tx: &mut Tx,
    id: &str,
    version: i64,
) -> Result<VersionCheck, sqlx::Error> {
    let check = replica::check(version_of(tx, id).await?, version);
    if check == VersionCheck::Apply {
        query("UPDATE orders SET status = $1, version = $2 WHERE id = $3")
            .bind(status::CANCELLED)
            .bind(version)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(check)
}
