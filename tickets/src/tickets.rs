//! The `tickets` table and the events its changes publish.

use ticketing_bus::outbox;
use ticketing_bus::Envelope;
use ticketing_contracts::events::{TicketCreated, TicketUpdated};
use ticketing_contracts::money::Cents;
use ticketing_contracts::{OrderId, TicketId, UserId};
use ticketing_store::{query, Backend, FromRow, Query, Store, Tx};

use crate::domain::Title;

#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub user_id: UserId,
    pub version: i64,
    pub order_id: Option<OrderId>,
}

const COLUMNS: &str = "id, title, price_cents, user_id, version, order_id";

ticketing_kit::from_row!(|row| Ticket {
    id,
    title,
    price: Cents::new(row.get("price_cents")?),
    user_id,
    version,
    order_id,
});

impl Ticket {
    fn updated_event(&self) -> Envelope {
        Envelope::new(&TicketUpdated {
            id: self.id.clone(),
            title: self.title.clone(),
            price: self.price,
            user_id: self.user_id.clone(),
            version: self.version,
            order_id: self.order_id.clone(),
            terms: Default::default(),
        })
    }
}

pub async fn create(
    tx: &mut Tx,
    title: &Title,
    price: Cents,
    user_id: &UserId,
) -> Result<Ticket, ticketing_store::Error> {
    let ticket = Ticket {
        id: TicketId::generate(),
        title: title.as_str().to_owned(),
        price,
        user_id: user_id.to_owned(),
        version: 0,
        order_id: None,
    };
    query(
        "INSERT INTO tickets (id, title, price_cents, user_id, version, order_id) \
         VALUES ($1, $2, $3, $4, 0, NULL)",
    )
    .bind(&ticket.id)
    .bind(&ticket.title)
    .bind(ticket.price.get())
    .bind(&ticket.user_id)
    .execute(&mut *tx)
    .await?;
    let event = Envelope::new(&TicketCreated {
        id: ticket.id.clone(),
        title: ticket.title.clone(),
        price: ticket.price,
        user_id: ticket.user_id.clone(),
        version: 0,
        terms: Default::default(),
    });
    outbox::enqueue(tx, &event).await?;
    Ok(ticket)
}

pub async fn find(store: &Store, id: &TicketId) -> Result<Option<Ticket>, ticketing_store::Error> {
    query(&format!("SELECT {COLUMNS} FROM tickets WHERE id = $1"))
        .bind(id)
        .fetch_optional_as(store.reader())
        .await
}

/// Available tickets, oldest first, after the cursor (an id).
pub async fn list_available(
    store: &Store,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Ticket>, ticketing_store::Error> {
    query(&format!(
        "SELECT {COLUMNS} FROM tickets WHERE order_id IS NULL AND id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all_as(store.reader())
    .await
}

/// Run a conditional write that returns the changed ticket ([`COLUMNS`]), and announce
/// the change as `ticket:updated` in the same transaction; `None` when the condition
/// refused the change.
async fn change(tx: &mut Tx, write: Query<'_>) -> Result<Option<Ticket>, ticketing_store::Error> {
    let Some(ticket) = write.fetch_optional_as::<Ticket>(&mut *tx).await? else {
        return Ok(None);
    };
    outbox::enqueue(tx, &ticket.updated_event()).await?;
    Ok(Some(ticket))
}

/// Edit title and price: only the owner, only while not reserved; checked by the write.
pub async fn update(
    tx: &mut Tx,
    id: &TicketId,
    user_id: &UserId,
    title: &Title,
    price: Cents,
) -> Result<Option<Ticket>, ticketing_store::Error> {
    let sql = format!(
        "UPDATE tickets SET title = $1, price_cents = $2, version = version + 1 \
         WHERE id = $3 AND user_id = $4 AND order_id IS NULL RETURNING {COLUMNS}"
    );
    let write = query(&sql)
        .bind(title.as_str())
        .bind(price.get())
        .bind(id)
        .bind(user_id);
    change(tx, write).await
}

/// Reserve for `order_id`. The orders service decides who holds a ticket; events for
/// different orders may arrive in any order, so a ticket moves only to a newer order
/// (order ids are UUIDv7, ordered by creation time) and never to a cancelled one.
///
/// One statement, no lock first: whatever it must not overtake is on the ticket's row
/// (`last_order_id`, written by [`release`] too), and a statement that waited for a
/// concurrent change of the row re-checks its condition against the row as committed.
/// `cancelled_orders` answers for tickets released before `last_order_id` existed.
pub async fn reserve(
    tx: &mut Tx,
    id: &TicketId,
    order_id: &OrderId,
) -> Result<Option<Ticket>, ticketing_store::Error> {
    let sql = format!(
        "UPDATE tickets SET order_id = $1, last_order_id = $1, version = version + 1 \
         WHERE id = $2 AND (order_id IS NULL OR order_id < $1) \
           AND (last_order_id IS NULL OR last_order_id < $1) \
           AND NOT EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1) \
         RETURNING {COLUMNS}"
    );
    change(tx, query(&sql).bind(order_id).bind(id)).await
}

/// [`reserve`] for several (ticket, order) pairs in one statement, PostgreSQL only: for
/// each pair, the ticket if this statement reserved it — its `ticket:updated` not yet
/// enqueued: [`announce`] it. A pair it did not reserve (refused, or a second order
/// for a ticket the statement moved: a row changes once per statement) goes to
/// [`reserve`] after it. On SQLite, nothing: a statement costs no round trip there.
pub async fn reserve_all(
    tx: &mut Tx,
    pairs: &[(&TicketId, &OrderId)],
) -> Result<Vec<Option<Ticket>>, ticketing_store::Error> {
    let mut reserved: Vec<Option<Ticket>> = vec![None; pairs.len()];
    if tx.backend() != Backend::Postgres || pairs.len() < 2 {
        return Ok(reserved);
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let columns: Vec<String> = COLUMNS
            .split(", ")
            .map(|c| format!("tickets.{c}"))
            .collect();
        format!(
            "UPDATE tickets SET order_id = r->>'order', last_order_id = r->>'order', \
             version = version + 1 \
             FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS batch(r, n) \
             WHERE id = r->>'ticket' AND (order_id IS NULL OR order_id < r->>'order') \
               AND (last_order_id IS NULL OR last_order_id < r->>'order') \
               AND NOT EXISTS (SELECT 1 FROM cancelled_orders \
                 WHERE cancelled_orders.order_id = r->>'order') \
             RETURNING batch.n, {}",
            columns.join(", ")
        )
    });
    let rows: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(ticket, order)| serde_json::json!({"ticket": ticket, "order": order}))
        .collect();
    for row in query(&SQL)
        .bind(serde_json::Value::from(rows).to_string())
        .fetch_all(&mut *tx)
        .await?
    {
        let n: i64 = row.get("n")?;
        reserved[n as usize - 1] = Some(Ticket::from_row(&row)?);
    }
    Ok(reserved)
}

/// Enqueue `ticket:updated` for a change [`reserve_all`] made.
pub async fn announce(tx: &mut Tx, ticket: &Ticket) -> Result<(), ticketing_store::Error> {
    outbox::enqueue(tx, &ticket.updated_event()).await
}

/// Release, only when the ticket is still held by `order_id`; either way remember the
/// order on the ticket's row, in case its `order:created` is still on the way.
///
/// The first statement also takes the row's lock: a concurrent [`reserve`] of the same
/// order either committed before it (the second statement, which reads afresh, then
/// finds the ticket held and releases it) or waits for this transaction and then finds
/// `last_order_id` at the order (and reserves nothing).
pub async fn release(
    tx: &mut Tx,
    id: &TicketId,
    order_id: &OrderId,
) -> Result<Option<Ticket>, ticketing_store::Error> {
    query(
        "UPDATE tickets SET last_order_id = $2 \
         WHERE id = $1 AND (last_order_id IS NULL OR last_order_id < $2)",
    )
    .bind(id)
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    let sql = format!(
        "UPDATE tickets SET order_id = NULL, version = version + 1 \
         WHERE id = $1 AND order_id = $2 RETURNING {COLUMNS}"
    );
    change(tx, query(&sql).bind(id).bind(order_id)).await
}

pub async fn exists(tx: &mut Tx, id: &TicketId) -> Result<bool, ticketing_store::Error> {
    Ok(query("SELECT 1 FROM tickets WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some())
}
