//! The replica of tickets, applied in version order.

use ticketing_bus::replica::{self, VersionCheck};
use ticketing_contracts::money::Cents;
use ticketing_contracts::TicketId;
use ticketing_store::{query, FromRow, Row, Tx};

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

pub async fn find(tx: &mut Tx, id: &TicketId) -> Result<Option<TicketCopy>, sqlx::Error> {
    query("SELECT id, title, price_cents, version FROM tickets WHERE id = $1")
        .bind(id)
        .fetch_optional_as(&mut *tx)
        .await
}

/// Apply a ticket's state at `copy.version`, if it is the next one.
pub async fn apply(tx: &mut Tx, copy: &TicketCopy) -> Result<VersionCheck, sqlx::Error> {
    let current = find(tx, &copy.id).await?.map(|t| t.version);
    let check = replica::check(current, copy.version);
    if check == VersionCheck::Apply {
        query(
            "INSERT INTO tickets (id, title, price_cents, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET title = $2, price_cents = $3, version = $4",
        )
        .bind(&copy.id)
        .bind(&copy.title)
        .bind(copy.price.get())
        .bind(copy.version)
        .execute(&mut *tx)
        .await?;
    }
    Ok(check)
}
