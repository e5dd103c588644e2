//! The `orders` table: every state change writes its event to the outbox in the same
//! transaction (or the same statement).

use std::sync::LazyLock;

use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::api::orders::CancelReason;
use ticketing_contracts::events::{OrderCancelled, OrderCreated, OrderCreatedTicket, TicketRef};
use ticketing_contracts::money::Cents;
use ticketing_contracts::{OrderId, OrderStatus, TicketId, Timestamp, UserId};
use ticketing_store::{query, Row, Store, Tx};

use crate::domain::{Deadline, Order, HOLDS_TICKET, OPEN};
use crate::placer::{Placement, Placer};
use crate::tickets::{self, TicketCopy};

const SELECT: &str = "SELECT o.id, o.user_id, o.status, o.expires_at, o.reserved_until, \
    o.version, o.cancel_reason, \
    t.id AS ticket_id, t.title, t.price_cents, t.version AS ticket_version \
    FROM orders o JOIN tickets t ON t.id = o.ticket_id";

ticketing_kit::from_row!(|row| Order {
    id,
    user_id,
    status: row.parse("status")?,
    deadline: deadline_of(row)?,
    version,
    ticket: TicketCopy {
        id: row.get("ticket_id")?,
        title: row.get("title")?,
        price: Cents::new(row.get("price_cents")?),
        version: row.get("ticket_version")?,
    },
    cancel_reason: row.parse_optional("cancel_reason")?,
});

/// The deadline an order's row holds.
fn deadline_of(row: &Row) -> Result<Deadline, ticketing_store::Error> {
    Ok(Deadline {
        expires_at: Timestamp::from_millis(row.get("expires_at")?),
        reserved_until: Timestamp::from_millis(row.get("reserved_until")?),
    })
}

/// Cancels the unpaid orders of a ticket whose reservation has run out by `$2` (now),
/// each by its own `reserved_until`.
fn expire_held_sql() -> String {
    format!(
        "UPDATE orders SET status = '{}', version = version + 1, cancel_reason = '{}' \
         WHERE ticket_id = $1 AND {HOLDS_TICKET} AND status IN ({}) AND reserved_until <= $2 \
         RETURNING id, version",
        OrderStatus::Cancelled,
        CancelReason::Expired.as_str(),
        open_states()
    )
}

fn open_states() -> String {
    OPEN.iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a new order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// No ticket with that id (in the replica).
    #[error("unknown ticket")]
    UnknownTicket,
    /// Another active order holds the ticket (decided by the unique index).
    #[error("ticket already reserved")]
    Reserved,
    #[error(transparent)]
    Db(#[from] ticketing_store::Error),
}

/// Place an order by `user_id` for ticket `ticket_id`, payable until
/// `deadline.expires_at`; its `order:created` is in the outbox when this returns.
///
/// The common case goes through `placer` (on PostgreSQL: batched with concurrent
/// placements, no transaction); whatever it does not place — the ticket unknown, held
/// (possibly by an expired order), changed meanwhile — is decided in a transaction.
pub async fn place(
    store: &Store,
    placer: &Placer,
    ticket_id: &TicketId,
    user_id: &UserId,
    now: Timestamp,
    deadline: Deadline,
) -> Result<Order, PlaceError> {
    if let Some(ticket) = placer.ticket(ticket_id).await {
        let (order, event) = new_order(&ticket, user_id, deadline);
        let placement = Placement {
            order: order.clone(),
            event,
        };
        if placer.insert(placement).await {
            return Ok(order);
        }
    }
    let mut tx = store.begin().await?;
    let order = place_in_tx(&mut tx, ticket_id, user_id, now, deadline).await?;
    tx.commit().await?;
    Ok(order)
}

/// [`place`] in the caller's transaction `tx` (a request with an idempotency key, whose
/// answer commits with the order).
pub async fn place_in_tx(
    tx: &mut Tx,
    ticket_id: &TicketId,
    user_id: &UserId,
    now: Timestamp,
    deadline: Deadline,
) -> Result<Order, PlaceError> {
    let ticket = tickets::find(tx, ticket_id)
        .await?
        .ok_or(PlaceError::UnknownTicket)?;
    place_in(tx, &ticket, user_id, now, deadline).await
}

/// A new order for `ticket` and its `order:created`.
fn new_order(ticket: &TicketCopy, user_id: &UserId, deadline: Deadline) -> (Order, Envelope) {
    let order = Order {
        id: OrderId::generate(),
        user_id: user_id.to_owned(),
        status: OrderStatus::Created,
        deadline,
        version: 0,
        ticket: ticket.clone(),
        cancel_reason: None,
    };
    let event = Envelope::new(&OrderCreated {
        id: order.id.clone(),
        status: order.status,
        user_id: order.user_id.clone(),
        expires_at: deadline.expires_at.to_rfc3339(),
        reserved_until: Some(deadline.reserved_until.to_rfc3339()),
        version: 0,
        ticket: OrderCreatedTicket {
            id: ticket.id.clone(),
            price: ticket.price,
        },
        quantity: 1,
    });
    (order, event)
}

/// Place an order for `ticket` in `tx`. Unpaid orders whose reservation ran out (past
/// the `reserved_until` on their row) no longer hold the ticket: when one is in the way it is cancelled
/// here, in the same transaction (lazy expiry), so the unique index only sees orders
/// that really hold it.
///
/// The insert comes first and the expiry only when it is refused: a free ticket, the
/// common case, costs one statement, and the unique index decides either way.
async fn place_in(
    tx: &mut Tx,
    ticket: &TicketCopy,
    user_id: &UserId,
    now: Timestamp,
    deadline: Deadline,
) -> Result<Order, PlaceError> {
    let (order, event) = new_order(ticket, user_id, deadline);
    if !insert(tx, &order).await? {
        let expired = query(&expire_held_sql())
            .bind(&ticket.id)
            .bind(now.as_millis())
            .fetch_all(&mut *tx)
            .await?;
        if expired.is_empty() || !insert(tx, &order).await? {
            return Err(PlaceError::Reserved);
        }
        for row in &expired {
            outbox::enqueue(
                tx,
                &cancelled_event(row.get("id")?, row.get("version")?, &ticket.id),
            )
            .await?;
        }
    }
    outbox::enqueue(tx, &event).await?;
    Ok(order)
}

/// Insert `order` unless an active order holds its ticket; whether it was inserted.
async fn insert(tx: &mut Tx, order: &Order) -> Result<bool, ticketing_store::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, reserved_until, \
                                 version) \
             VALUES ($1, $2, $3, $4, $5, $6, 0) \
             ON CONFLICT (ticket_id) WHERE {HOLDS_TICKET} DO NOTHING"
        )
    });
    let inserted = query(&SQL)
        .bind(&order.id)
        .bind(&order.user_id)
        .bind(&order.ticket.id)
        .bind(order.status.as_str())
        .bind(order.deadline.expires_at.as_millis())
        .bind(order.deadline.reserved_until.as_millis())
        .execute(&mut *tx)
        .await?;
    Ok(inserted == 1)
}

fn cancelled_event(order_id: OrderId, version: i64, ticket_id: &TicketId) -> Envelope {
    Envelope::new(&OrderCancelled {
        id: order_id,
        version,
        ticket: TicketRef {
            id: ticket_id.to_owned(),
        },
    })
}

pub async fn find(store: &Store, id: &OrderId) -> Result<Option<Order>, ticketing_store::Error> {
    query(&format!("{SELECT} WHERE o.id = $1"))
        .bind(id)
        .fetch_optional_as(store.reader())
        .await
}

pub async fn list_for_user(
    store: &Store,
    user_id: &UserId,
) -> Result<Vec<Order>, ticketing_store::Error> {
    query(&format!("{SELECT} WHERE o.user_id = $1 ORDER BY o.id"))
        .bind(user_id)
        .fetch_all_as(store.reader())
        .await
}

/// Cancel an open order (only the buyer's, when cancelled by the buyer); publishes
/// `order:cancelled`. `None` when the order is not open (or not the buyer's).
pub async fn cancel(
    tx: &mut Tx,
    id: &OrderId,
    reason: CancelReason,
    buyer: Option<&UserId>,
) -> Result<Option<(TicketId, i64)>, ticketing_store::Error> {
    let row = query(&format!(
        "UPDATE orders SET status = '{}', version = version + 1, cancel_reason = $3 \
         WHERE id = $1 AND ($2 = '' OR user_id = $2) AND status IN ({}) \
         RETURNING ticket_id, version",
        OrderStatus::Cancelled,
        open_states()
    ))
    .bind(id)
    .bind(buyer.map_or("", UserId::as_str))
    .bind(reason.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (ticket_id, version): (TicketId, i64) = (row.get("ticket_id")?, row.get("version")?);
    outbox::enqueue(tx, &cancelled_event(id.to_owned(), version, &ticket_id)).await?;
    Ok(Some((ticket_id, version)))
}

/// Mark an open order paid. `false` when it was not open (already complete, cancelled).
pub async fn complete(tx: &mut Tx, id: &OrderId) -> Result<bool, ticketing_store::Error> {
    let done = query(&format!(
        "UPDATE orders SET status = '{}', version = version + 1 WHERE id = $1 AND status IN ({})",
        OrderStatus::Complete,
        open_states()
    ))
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(done == 1)
}

pub async fn status_of(
    tx: &mut Tx,
    id: &OrderId,
) -> Result<Option<OrderStatus>, ticketing_store::Error> {
    let row = query("SELECT status FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| r.parse("status")).transpose()
}

/// The deadline of an order that is still open (`None` when unknown or no longer open).
pub async fn open_deadline(
    tx: &mut Tx,
    id: &OrderId,
) -> Result<Option<Deadline>, ticketing_store::Error> {
    let row = query(&format!(
        "SELECT expires_at, reserved_until FROM orders WHERE id = $1 AND status IN ({})",
        open_states()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    row.as_ref().map(deadline_of).transpose()
}

#[cfg(test)]
mod tests {
    use ticketing_contracts::{OrderId, Timestamp};
    use ticketing_kit::testing::{TestBackend, TestEnv};
    use ticketing_store::{query, Store};

    use crate::domain::Deadline;

    /// Placing an order must not scan every order ever placed (it did: 15,000 orders in,
    /// each placement held the writer for a table scan).
    #[tokio::test]
    async fn expiring_held_orders_searches_the_ticket_index() {
        let env = TestEnv::new(TestBackend::Sqlite);
        let location = env.runtime.location("orders").unwrap();
        let store = Store::open(&location, &crate::MIGRATIONS).await.unwrap();
        let plan = query(&format!("EXPLAIN QUERY PLAN {}", super::expire_held_sql()))
            .bind("ticket")
            .bind(0_i64)
            .fetch_all(store.reader())
            .await
            .unwrap();
        let plan: Vec<String> = plan.iter().map(|row| row.get("detail").unwrap()).collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX orders_one_active_per_ticket")),
            "{plan:?}"
        );
        store.close().await;
    }

    /// Orders placed before `reserved_until` was stored keep the deadline the code held
    /// them to: `expires_at` plus the default grace.
    async fn orders_placed_before_the_column_get_their_deadline(backend: TestBackend) {
        let env = TestEnv::new(backend);
        let location = env.runtime.location("orders").unwrap();
        let before = crate::MIGRATIONS.first(2);
        let store = Store::open(&location, &before).await.unwrap();
        query("INSERT INTO tickets (id, title, price_cents, version) VALUES ('t', 'T', 100, 0)")
            .execute(store.writer())
            .await
            .unwrap();
        query(
            "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, version) \
             VALUES ('o', 'u', 't', 'created', 1000000, 0)",
        )
        .execute(store.writer())
        .await
        .unwrap();
        store.close().await;

        let store = Store::open(&location, &crate::MIGRATIONS).await.unwrap();
        let order = super::find(&store, &OrderId::from("o"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            order.deadline,
            Deadline::new(
                Timestamp::from_millis(1_000_000),
                crate::DEFAULT_PAYMENT_GRACE
            )
        );
        store.close().await;
    }

    #[tokio::test]
    async fn orders_placed_before_the_column_get_their_deadline_sqlite() {
        orders_placed_before_the_column_get_their_deadline(TestBackend::Sqlite).await
    }

    #[tokio::test]
    async fn orders_placed_before_the_column_get_their_deadline_postgres() {
        orders_placed_before_the_column_get_their_deadline(TestBackend::Postgres).await
    }
}
