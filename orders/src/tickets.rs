//! The replica of tickets: the newest version of each, whatever the arrival order.

use std::sync::LazyLock;

use ticketing_bus::HandlerError;
use ticketing_contracts::events::{TicketCreated, TicketUpdated};
use ticketing_contracts::money::Cents;
use ticketing_contracts::TicketId;
use ticketing_kit::replica::{CopyOf, Replicated};
use ticketing_store::{query, Query, Tx};

#[derive(Debug, Clone)]
pub struct TicketCopy {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub version: i64,
}

// `ticket:created` and `ticket:updated` both carry the whole ticket: one listener
// (`CopyListener`) serves each.
impl CopyOf<TicketCreated> for TicketCopy {
    fn copy_of(t: TicketCreated) -> Result<TicketCopy, HandlerError> {
        Ok(TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        })
    }
}

impl CopyOf<TicketUpdated> for TicketCopy {
    fn copy_of(t: TicketUpdated) -> Result<TicketCopy, HandlerError> {
        Ok(TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        })
    }
}

ticketing_kit::from_row!(|row| TicketCopy {
    id,
    title,
    price: Cents::new(row.get("price_cents")?),
    version,
});

/// The columns [`TicketCopy`] is read from.
pub const FIND_COLUMNS: &str = "id, title, price_cents, version";

pub async fn find(
    tx: &mut Tx,
    id: &TicketId,
) -> Result<Option<TicketCopy>, ticketing_store::Error> {
    static FIND: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {FIND_COLUMNS} FROM tickets WHERE id = $1"));
    query(&FIND).bind(id).fetch_optional_as(&mut *tx).await
}

/// Ticket events carry the whole ticket, so the newest wins whatever the arrival order —
/// a duplicate, an older event or one whose predecessor is still on its way changes
/// nothing or everything, never blocks (decision 0023). One statement, no read first.
impl Replicated for TicketCopy {
    const UPSERT: &'static str =
        "INSERT INTO tickets (id, title, price_cents, version) VALUES ($1, $2, $3, $4) \
        ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
        price_cents = excluded.price_cents, version = excluded.version \
        WHERE tickets.version < excluded.version";

    const UPSERT_ALL: &'static str = "INSERT INTO tickets (id, title, price_cents, version) \
        SELECT DISTINCT ON (c->>'id') c->>'id', c->>'title', (c->>'price')::bigint, \
        (c->>'version')::bigint \
        FROM jsonb_array_elements($1::jsonb) AS batch(c) \
        ORDER BY c->>'id', (c->>'version')::bigint DESC \
        ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
        price_cents = excluded.price_cents, version = excluded.version \
        WHERE tickets.version < excluded.version";

    fn bind<'q>(&self, upsert: Query<'q>) -> Query<'q> {
        upsert
            .bind(&self.id)
            .bind(&self.title)
            .bind(self.price.get())
            .bind(self.version)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "title": self.title, "price": self.price.get(), "version": self.version,
        })
    }
}
