//! The replica of tickets, applied in version order.

use ticketing_bus::replica::{self, VersionCheck};
use ticketing_contracts::money::Cents;
use ticketing_contracts::TicketId;
use ticketing_store::{query, FromRow, Row, Store, Tx};

#[derive(Debug, Clone)]
pub struct TicketCopy {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub version: i64,
}

impl FromRow for TicketCopy {
    fn from_row(row: &Row) -> Result<TicketCopy, sqlx::Error> {
        Ok(TicketCopy {
            id: row.get("id")?,
            title: row.get("title")?,
            price: Cents::new(row.get("price_cents")?),
            version: row.get("version")?,
        })
    }
}

const FIND: &str = "SELECT id, title, price_cents, version FROM tickets WHERE id = $1";

pub async fn find(tx: &mut Tx, id: &TicketId) -> Result<Option<TicketCopy>, sqlx::Error> {
    query(FIND).bind(id).fetch_optional_as(&mut *tx).await
}

/// The ticket as last applied, read outside a transaction.
pub async fn find_now(store: &Store, id: &TicketId) -> Result<Option<TicketCopy>, sqlx::Error> {
    query(FIND).bind(id).fetch_optional_as(store.reader()).await
}

/// Apply a ticket's state at `copy.version`, if it is the next one.
pub async fn apply(tx: &mut Tx, copy: &TicketCopy) -> Result<VersionCheck, sqlx::Error> {
    let written = if copy.version == 0 {
        query(
            "INSERT INTO tickets (id, title, price_cents, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
    } else {
        query(
            "UPDATE tickets SET title = $2, price_cents = $3, version = $4 \
             WHERE id = $1 AND version = $4 - 1",
        )
    }
    .bind(&copy.id)
    .bind(&copy.title)
    .bind(copy.price.get())
    .bind(copy.version)
    .execute(&mut *tx)
    .await?;
    if written == 1 {
        return Ok(VersionCheck::Apply);
    }
    let current = find(tx, &copy.id).await?.map(|t| t.version);
    Ok(replica::missed(current, copy.version))
}
