//! The replica of tickets: the newest version of each, whatever the arrival order.

use std::sync::LazyLock;

use ticketing_contracts::events::{TicketCreated, TicketUpdated};
use ticketing_contracts::money::Cents;
use ticketing_contracts::TicketId;
use ticketing_store::{query, Backend, FromRow, Row, Tx};

#[derive(Debug, Clone)]
pub struct TicketCopy {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub version: i64,
}

impl From<TicketCreated> for TicketCopy {
    fn from(t: TicketCreated) -> TicketCopy {
        TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        }
    }
}

impl From<TicketUpdated> for TicketCopy {
    fn from(t: TicketUpdated) -> TicketCopy {
        TicketCopy {
            id: t.id,
            title: t.title,
            price: t.price,
            version: t.version,
        }
    }
}

impl FromRow for TicketCopy {
    fn from_row(row: &Row) -> Result<TicketCopy, ticketing_store::Error> {
        Ok(TicketCopy {
            id: row.get("id")?,
            title: row.get("title")?,
            price: Cents::new(row.get("price_cents")?),
            version: row.get("version")?,
        })
    }
}

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

/// Keep `copy` unless the replica already holds its version or a newer one: ticket
/// events carry the whole ticket, so the newest wins whatever the arrival order — a
/// duplicate, an older event or one whose predecessor is still on its way changes
/// nothing or everything, never blocks (decision 0023). One statement, no read first.
const UPSERT: &str =
    "INSERT INTO tickets (id, title, price_cents, version) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
    price_cents = excluded.price_cents, version = excluded.version \
    WHERE tickets.version < excluded.version";

/// [`UPSERT`] for a batch on PostgreSQL: one statement for the lot, the newest copy of
/// each ticket (a row changes once per statement), rows in ticket order like every
/// other writer of the table, so two batches wait for each other and never deadlock.
const UPSERT_ALL: &str = "INSERT INTO tickets (id, title, price_cents, version) \
    SELECT DISTINCT ON (c->>'id') c->>'id', c->>'title', (c->>'price')::bigint, \
    (c->>'version')::bigint \
    FROM jsonb_array_elements($1::jsonb) AS batch(c) \
    ORDER BY c->>'id', (c->>'version')::bigint DESC \
    ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
    price_cents = excluded.price_cents, version = excluded.version \
    WHERE tickets.version < excluded.version";

/// Apply `copies` (ticket events, in any order, duplicates included) newest-wins: on
/// PostgreSQL one statement for a batch, on SQLite one per copy (a statement costs no
/// round trip there).
pub async fn apply_all(tx: &mut Tx, copies: &[TicketCopy]) -> Result<(), ticketing_store::Error> {
    if tx.backend() == Backend::Postgres && copies.len() > 1 {
        let rows: Vec<serde_json::Value> = copies
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id, "title": c.title, "price": c.price.get(), "version": c.version,
                })
            })
            .collect();
        query(UPSERT_ALL)
            .bind(serde_json::Value::from(rows).to_string())
            .execute(&mut *tx)
            .await?;
        return Ok(());
    }
    for copy in copies {
        query(UPSERT)
            .bind(&copy.id)
            .bind(&copy.title)
            .bind(copy.price.get())
            .bind(copy.version)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
