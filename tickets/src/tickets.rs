//! The `tickets` table and the events its changes publish.

use ticketing_bus::outbox;
use ticketing_bus::Envelope;
use ticketing_contracts::events::{TicketCreated, TicketUpdated};
use ticketing_contracts::money::Cents;
use ticketing_contracts::terms::SaleTerms;
use ticketing_contracts::time::Timestamp;
use ticketing_contracts::{OrderId, TicketId, UserId};
use ticketing_store::{query, Backend, FromRow, Query, Row, Store, Tx};

use crate::domain::{Refund, Terms, Title};

#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: TicketId,
    pub title: String,
    pub price: Cents,
    pub user_id: UserId,
    pub version: i64,
    pub order_id: Option<OrderId>,
    /// `None`: listed the seed's way (one unit, held through `order_id`).
    pub terms: Option<Terms>,
    /// Units held or sold by orders not cancelled.
    pub held: i64,
    /// The event's time and refund policy (none: listed without them).
    pub refund: Refund,
}

const COLUMNS: &str = "id, title, price_cents, user_id, version, order_id, \
                       quantity, max_per_order, max_per_account, on_sale_at, held, \
                       event_at, refund_cutoff_hours, refund_fee_bp";

ticketing_kit::from_row!(|row| Ticket {
    id,
    title,
    price: Cents::new(row.get("price_cents")?),
    user_id,
    version,
    order_id,
    terms: stored_terms(row)?,
    held,
    refund: Refund::from_columns(
        row.get("event_at")?,
        row.get("refund_cutoff_hours")?,
        row.get("refund_fee_bp")?,
    ),
});

/// The terms columns: all set once a listing is counted (written from a [`Terms`]).
fn stored_terms(row: &Row) -> Result<Option<Terms>, ticketing_store::Error> {
    let Some(quantity) = row.get::<Option<i64>>("quantity")? else {
        return Ok(None);
    };
    let per_order = row.get::<Option<i64>>("max_per_order")?.unwrap_or(1);
    let per_account = row
        .get::<Option<i64>>("max_per_account")?
        .unwrap_or(per_order);
    let on_sale_at = row.get::<Option<Timestamp>>("on_sale_at")?;
    Ok(Some(Terms::from_stored(
        quantity,
        per_order,
        per_account,
        on_sale_at,
    )))
}

impl Ticket {
    /// The terms a body or an event carries (none for a ticket listed the seed's way).
    pub fn sale_terms(&self) -> SaleTerms {
        self.terms.map(Terms::to_contract).unwrap_or_default()
    }

    /// Units neither held nor sold, for a counted listing. More may be held than listed
    /// (the orders service decides; a quantity is never lowered below `held`, but the
    /// orders of a moment may overshoot): none are then left.
    pub fn available(&self) -> Option<i64> {
        self.terms.map(|t| (t.quantity() - self.held).max(0))
    }

    fn updated_event(&self) -> Envelope {
        Envelope::new(&TicketUpdated {
            id: self.id.clone(),
            title: self.title.clone(),
            price: self.price,
            user_id: self.user_id.clone(),
            version: self.version,
            order_id: self.order_id.clone(),
            terms: self.sale_terms(),
            refund: self.refund.to_contract(),
        })
    }
}

/// The terms columns' values, in [`COLUMNS`]' order (all NULL for the seed's way).
fn terms_values(terms: Option<&Terms>) -> [Option<i64>; 4] {
    match terms {
        None => [None; 4],
        Some(t) => [
            Some(t.quantity()),
            Some(t.max_per_order()),
            Some(t.max_per_account()),
            t.on_sale_at().map(Timestamp::as_millis),
        ],
    }
}

pub async fn create(
    tx: &mut Tx,
    title: &Title,
    price: Cents,
    user_id: &UserId,
    terms: Option<&Terms>,
    refund: Refund,
) -> Result<Ticket, ticketing_store::Error> {
    let ticket = Ticket {
        id: TicketId::generate(),
        title: title.as_str().to_owned(),
        price,
        user_id: user_id.to_owned(),
        version: 0,
        order_id: None,
        terms: terms.copied(),
        held: 0,
        refund,
    };
    let [quantity, per_order, per_account, on_sale_at] = terms_values(terms);
    let [event_at, cutoff, fee] = refund.columns();
    query(
        "INSERT INTO tickets (id, title, price_cents, user_id, version, order_id, \
           quantity, max_per_order, max_per_account, on_sale_at, held, \
           event_at, refund_cutoff_hours, refund_fee_bp) \
         VALUES ($1, $2, $3, $4, 0, NULL, $5, $6, $7, $8, 0, $9, $10, $11)",
    )
    .bind(&ticket.id)
    .bind(&ticket.title)
    .bind(ticket.price.get())
    .bind(&ticket.user_id)
    .bind(quantity)
    .bind(per_order)
    .bind(per_account)
    .bind(on_sale_at)
    .bind(event_at)
    .bind(cutoff)
    .bind(fee)
    .execute(&mut *tx)
    .await?;
    let event = Envelope::new(&TicketCreated {
        id: ticket.id.clone(),
        title: ticket.title.clone(),
        price: ticket.price,
        user_id: ticket.user_id.clone(),
        version: 0,
        terms: ticket.sale_terms(),
        refund: ticket.refund.to_contract(),
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

/// Available tickets, oldest first, after the cursor (an id): those listed the seed's
/// way while no order holds them, counted listings while units are left. (A counted
/// listing never has an `order_id`, so the partial index `tickets_available` still
/// serves the scan.)
pub async fn list_available(
    store: &Store,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Ticket>, ticketing_store::Error> {
    query(&format!(
        "SELECT {COLUMNS} FROM tickets WHERE order_id IS NULL \
           AND (quantity IS NULL OR held < quantity) AND id > $1 ORDER BY id LIMIT $2"
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

/// The refund columns of an update: set when the flag (`$5`) is 1, kept otherwise.
const KEEP_OR_SET_REFUND: &str = "event_at = CASE WHEN $5 = 1 THEN $6 ELSE event_at END, \
    refund_cutoff_hours = CASE WHEN $5 = 1 THEN $7 ELSE refund_cutoff_hours END, \
    refund_fee_bp = CASE WHEN $5 = 1 THEN $8 ELSE refund_fee_bp END";
/// [`KEEP_OR_SET_REFUND`] after the terms' parameters (`$9` the flag).
const KEEP_OR_SET_REFUND_AFTER_TERMS: &str =
    "event_at = CASE WHEN $9 = 1 THEN $10 ELSE event_at END, \
    refund_cutoff_hours = CASE WHEN $9 = 1 THEN $11 ELSE refund_cutoff_hours END, \
    refund_fee_bp = CASE WHEN $9 = 1 THEN $12 ELSE refund_fee_bp END";

/// Edit title and price, and the terms when `terms` is given: only the owner, only
/// while not reserved (a counted listing never is), never to fewer units than its
/// orders hold; checked by the write, which refuses with `None`.
pub async fn update(
    tx: &mut Tx,
    id: &TicketId,
    user_id: &UserId,
    title: &Title,
    price: Cents,
    terms: Option<&Terms>,
    refund: Option<Refund>,
) -> Result<Option<Ticket>, ticketing_store::Error> {
    // Not given: the columns keep their values (the seed's client sends neither).
    let [event_at, cutoff, fee] = refund.unwrap_or_default().columns();
    let given = i64::from(refund.is_some());
    let Some(terms) = terms else {
        // The seed's edit: the listing's terms stay as they are.
        let sql = format!(
            "UPDATE tickets SET title = $1, price_cents = $2, version = version + 1, \
               {KEEP_OR_SET_REFUND} \
             WHERE id = $3 AND user_id = $4 AND order_id IS NULL RETURNING {COLUMNS}"
        );
        let write = query(&sql)
            .bind(title.as_str())
            .bind(price.get())
            .bind(id)
            .bind(user_id)
            .bind(given)
            .bind(event_at)
            .bind(cutoff)
            .bind(fee);
        return change(tx, write).await;
    };
    // `held` is re-checked here: an order may have taken units since the input was
    // checked against the listing.
    let sql = format!(
        "UPDATE tickets SET title = $1, price_cents = $2, version = version + 1, \
           quantity = $5, max_per_order = $6, max_per_account = $7, on_sale_at = $8, \
           {KEEP_OR_SET_REFUND_AFTER_TERMS} \
         WHERE id = $3 AND user_id = $4 AND order_id IS NULL AND held <= $5 \
         RETURNING {COLUMNS}"
    );
    let [quantity, per_order, per_account, on_sale_at] = terms_values(Some(terms));
    let write = query(&sql)
        .bind(title.as_str())
        .bind(price.get())
        .bind(id)
        .bind(user_id)
        .bind(quantity)
        .bind(per_order)
        .bind(per_account)
        .bind(on_sale_at)
        .bind(given)
        .bind(event_at)
        .bind(cutoff)
        .bind(fee);
    change(tx, write).await
}

/// Reserve for `order_id`. The orders service decides who holds a ticket; events for
/// different orders may arrive in any order, so a ticket moves only to a newer order
/// (order ids are UUIDv7, ordered by creation time) and never to a cancelled one.
/// Tickets listed the seed's way only: a counted listing's orders hold units ([`hold`]).
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
         WHERE id = $2 AND quantity IS NULL AND (order_id IS NULL OR order_id < $1) \
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
             WHERE id = r->>'ticket' AND quantity IS NULL \
               AND (order_id IS NULL OR order_id < r->>'order') \
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

/// What kind of listing an order is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Listed the seed's way: the order also reserves it ([`reserve`]).
    Single,
    /// Listed with a quantity: the order's units are counted, nothing else changes (no
    /// version, no `ticket:updated`: a listing of 10,000 units would otherwise publish
    /// an event per order).
    Counted,
}

impl Listing {
    fn of(quantity: Option<i64>) -> Listing {
        match quantity {
            None => Listing::Single,
            Some(_) => Listing::Counted,
        }
    }
}

/// Count `quantity` units of `ticket` as held by `order`, once per order: a redelivery,
/// or an `order:created` after its order's cancellation (which left a released row),
/// counts nothing. The kind of listing, or `None` for an unknown ticket.
///
/// Called before [`reserve`] in the same transaction, and [`unhold`] before [`release`]:
/// both listeners take the order's hold row first, then the ticket's row, so that the
/// two events of one order handled at once on PostgreSQL wait for each other instead of
/// deadlocking.
pub async fn hold(
    tx: &mut Tx,
    ticket: &TicketId,
    order: &OrderId,
    quantity: i64,
) -> Result<Option<Listing>, ticketing_store::Error> {
    if tx.backend() == Backend::Postgres {
        // One round trip rather than two.
        return Ok(hold_batch(tx, &[(ticket, order, quantity)]).await?[0]);
    }
    let added = query(
        "INSERT INTO ticket_holds (order_id, ticket_id, quantity, released) \
         VALUES ($1, $2, $3, 0) ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
    )
    .bind(order)
    .bind(ticket)
    .bind(quantity.max(0))
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    let row = if added {
        query("UPDATE tickets SET held = held + $1 WHERE id = $2 RETURNING quantity")
            .bind(quantity.max(0))
            .bind(ticket)
            .fetch_optional(&mut *tx)
            .await?
    } else {
        query("SELECT quantity FROM tickets WHERE id = $1")
            .bind(ticket)
            .fetch_optional(&mut *tx)
            .await?
    };
    row.map(|row| row.get::<Option<i64>>("quantity").map(Listing::of))
        .transpose()
}

/// [`hold`] for a batch of orders `(ticket, order, quantity)` in one statement,
/// PostgreSQL only: for each order, the kind of its listing (`None`: unknown ticket).
/// `None` on SQLite, where a statement costs no round trip, or for a single order (the
/// caller's one-by-one path, [`hold`], then does the same in one statement).
pub async fn hold_all(
    tx: &mut Tx,
    holds: &[(&TicketId, &OrderId, i64)],
) -> Result<Option<Vec<Option<Listing>>>, ticketing_store::Error> {
    if tx.backend() != Backend::Postgres || holds.len() < 2 {
        return Ok(None);
    }
    hold_batch(tx, holds).await.map(Some)
}

/// [`hold_all`]'s statement (PostgreSQL).
async fn hold_batch(
    tx: &mut Tx,
    holds: &[(&TicketId, &OrderId, i64)],
) -> Result<Vec<Option<Listing>>, ticketing_store::Error> {
    // A data-modifying CTE runs to completion whether or not the final SELECT reads it;
    // the SELECT sees the tickets as before the statement, which is all it needs (it
    // reads `quantity`, which no order changes). An order twice in the batch is
    // inserted once (the second meets the first's row: DO NOTHING).
    const SQL: &str = "WITH batch AS ( \
           SELECT r->>'order' AS order_id, r->>'ticket' AS ticket_id, \
             (r->>'quantity')::bigint AS quantity, n \
           FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS b(r, n)), \
         added AS ( \
           INSERT INTO ticket_holds (order_id, ticket_id, quantity, released) \
           SELECT order_id, ticket_id, quantity, 0 FROM batch ORDER BY n \
           ON CONFLICT (order_id) DO NOTHING RETURNING ticket_id, quantity), \
         counted AS ( \
           UPDATE tickets SET held = tickets.held + sums.quantity \
           FROM (SELECT ticket_id, SUM(quantity)::bigint AS quantity FROM added \
                 GROUP BY ticket_id) AS sums \
           WHERE tickets.id = sums.ticket_id RETURNING tickets.id) \
         SELECT batch.n, tickets.quantity FROM batch JOIN tickets ON tickets.id = batch.ticket_id";
    let rows: Vec<serde_json::Value> = holds
        .iter()
        .map(|(ticket, order, quantity)| {
            serde_json::json!({"ticket": ticket, "order": order, "quantity": quantity.max(&0)})
        })
        .collect();
    let mut listings = vec![None; holds.len()];
    for row in query(SQL)
        .bind(serde_json::Value::from(rows).to_string())
        .fetch_all(&mut *tx)
        .await?
    {
        let n: i64 = row.get("n")?;
        listings[n as usize - 1] = Some(Listing::of(row.get("quantity")?));
    }
    Ok(listings)
}

/// Release the units `order` holds, once: a redelivered cancellation releases nothing,
/// and one that overtook its order's creation leaves a released row with no units, so
/// that the creation, when it comes, counts nothing ([`hold`]).
pub async fn unhold(
    tx: &mut Tx,
    ticket: &TicketId,
    order: &OrderId,
) -> Result<(), ticketing_store::Error> {
    const RELEASE: &str =
        "INSERT INTO ticket_holds (order_id, ticket_id, quantity, released, released_at) \
         VALUES ($1, $2, 0, 1, $3) \
         ON CONFLICT (order_id) DO UPDATE SET released = 1, released_at = $3 \
           WHERE ticket_holds.released = 0 \
         RETURNING ticket_id, quantity";
    if tx.backend() == Backend::Postgres {
        // Both writes in one round trip.
        query(&format!(
            "WITH released AS ({RELEASE}) \
             UPDATE tickets SET held = tickets.held - released.quantity FROM released \
             WHERE tickets.id = released.ticket_id AND released.quantity > 0"
        ))
        .bind(order)
        .bind(ticket)
        .bind(Timestamp::now())
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    let released = query(RELEASE)
        .bind(order)
        .bind(ticket)
        .bind(Timestamp::now())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = released else {
        return Ok(());
    };
    let quantity: i64 = row.get("quantity")?;
    if quantity > 0 {
        // The ticket the units were counted on (the creation's), whatever this says.
        let ticket: TicketId = row.get("ticket_id")?;
        query("UPDATE tickets SET held = held - $1 WHERE id = $2")
            .bind(quantity)
            .bind(&ticket)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
