//! The replica of tickets, applied in version order.

use std::sync::LazyLock;

use ticketing_bus::replica::{self, VersionCheck};
use ticketing_bus::HandlerError;
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

/// Apply a ticket's state at `copy.version`, if it is the next one.
pub async fn apply(tx: &mut Tx, copy: &TicketCopy) -> Result<VersionCheck, ticketing_store::Error> {
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

/// [`apply`] for several copies, in order: what each one did. On PostgreSQL the common
/// case — every copy the next version of its ticket — is one statement for the lot
/// (inserts for version 0, updates otherwise); the copies it did not write (a
/// duplicate, an early event, a later version of a ticket the batch also moves) are
/// then applied one by one, in order, after it.
pub async fn apply_all(
    tx: &mut Tx,
    copies: &[TicketCopy],
) -> Result<Vec<VersionCheck>, ticketing_store::Error> {
    let mut written = vec![false; copies.len()];
    if tx.backend() == Backend::Postgres && copies.len() > 1 {
        const INSERT: &str = "INSERT INTO tickets (id, title, price_cents, version) \
            SELECT c->>'id', c->>'title', (c->>'price')::bigint, 0 \
            FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS batch(c, n) \
            WHERE (c->>'version')::bigint = 0 ORDER BY n \
            ON CONFLICT (id) DO NOTHING RETURNING id";
        const UPDATE: &str = "UPDATE tickets SET title = c->>'title', \
            price_cents = (c->>'price')::bigint, version = (c->>'version')::bigint \
            FROM jsonb_array_elements($1::jsonb) AS batch(c) \
            WHERE id = c->>'id' AND version = (c->>'version')::bigint - 1 \
            RETURNING id, version";
        let rows: Vec<serde_json::Value> = copies
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id, "title": c.title, "price": c.price.get(), "version": c.version,
                })
            })
            .collect();
        let rows = serde_json::Value::from(rows).to_string();
        let mut done = std::collections::HashSet::new();
        if copies.iter().any(|c| c.version == 0) {
            let ids: Vec<String> = query(INSERT).bind(rows.clone()).scalars(&mut *tx).await?;
            done.extend(ids.into_iter().map(|id| (id, 0)));
        }
        if copies.iter().any(|c| c.version > 0) {
            for row in query(UPDATE).bind(rows).fetch_all(&mut *tx).await? {
                done.insert((row.get::<String>("id")?, row.get::<i64>("version")?));
            }
        }
        for (copy, written) in copies.iter().zip(&mut written) {
            // `remove`: a copy the batch holds twice was written once.
            *written = done.remove(&(copy.id.to_string(), copy.version));
        }
    }
    let mut checks = Vec::with_capacity(copies.len());
    for (copy, written) in copies.iter().zip(written) {
        checks.push(if written {
            VersionCheck::Apply
        } else {
            apply(tx, copy).await?
        });
    }
    Ok(checks)
}

/// The listeners' side of [`apply_all`]: done, or a retry for a copy that came before its
/// predecessor (`subject` names the events in the message).
pub async fn apply_events(
    tx: &mut Tx,
    copies: &[TicketCopy],
    subject: &str,
) -> Result<(), HandlerError> {
    for (copy, check) in copies.iter().zip(apply_all(tx, copies).await?) {
        check.outcome(format_args!("{subject} v{}", copy.version))?;
    }
    Ok(())
}
