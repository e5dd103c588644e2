//! The replica of tickets, applied in version order.

use ticketing_shared::events::replica::{self, VersionCheck};
use ticketing_shared::money::Cents;
use ticketing_shared::store::{query, Tx};

#[derive(Debug, Clone)]
pub struct TicketCopy {
    pub id: String,
    pub title: String,
    pub price: Cents,
    pub version: i64,
}

pub async fn find(tx: &mut Tx, id: &str) -> Result<Option<TicketCopy>, sqlx::Error> {
    let row = query("SELECT id, title, price_cents, version FROM tickets WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(|r| TicketCopy {
        id: r.get("id"),
        title: r.get("title"),
        price: Cents::new(r.get("price_cents")),
        version: r.get("version"),
    }))
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
