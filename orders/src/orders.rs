//! The `orders` table: every state change writes its event to the outbox in the same
//! transaction (or the same statement).

use std::sync::LazyLock;

use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::api::orders::CancelReason;
use ticketing_contracts::api::waitlist::WaitlistStatus;
use ticketing_contracts::events::{
    OrderCancelled, OrderCompleted, OrderCreated, OrderCreatedTicket, TicketRef, WaitlistOffered,
};
use ticketing_contracts::money::Cents;
use ticketing_contracts::{OrderId, OrderStatus, TicketId, Timestamp, UserId};
use ticketing_store::{query, Row, Store, Tx};

use crate::claim::{self, Refused};
use crate::domain::{At, Units};
use crate::domain::{Deadline, Order, HOLDS_TICKET, OPEN};
use crate::placer::{Placement, Placer};
use crate::queue::{self, Gate};
use crate::tickets::{self, TicketCopy};
use crate::turns::{self, Turn};
use crate::waitlist;

const SELECT: &str = "SELECT o.id, o.user_id, o.status, o.expires_at, o.reserved_until, \
    o.version, o.cancel_reason, o.quantity AS units, \
    t.id AS ticket_id, t.title, t.price_cents, t.version AS ticket_version, \
    t.quantity, t.max_per_order, t.max_per_account, t.on_sale_at, \
    t.event_at, t.refund_cutoff_hours, t.refund_fee_bp \
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
        terms: tickets::terms_of(row)?,
        refund: tickets::refund_of(row)?,
    },
    quantity: row.get("units")?,
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
         RETURNING id, version, user_id, quantity, waitlist_entry_id",
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
    /// Not that many units in one order: the listing's `maxPerOrder` (also for a
    /// quantity that is not a whole number from 1 on).
    #[error("at most {0} per order")]
    PerOrder(i64),
    /// More than 30 minutes before the listing's sale.
    #[error("not on sale yet")]
    NotOnSale,
    /// The listing's queue is in force and has not admitted the buyer (or the sale has
    /// not begun): join it, wait.
    #[error("in the queue")]
    Queued,
    /// The listing or the account has not the units (decided by the claim).
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Db(#[from] ticketing_store::Error),
}

/// Place an order by `user_id` for `units` of listing `ticket_id`, payable until
/// `deadline.expires_at`; its `order:created` is in the outbox when this returns.
///
/// The common cases go through `placer` ([`place_batched`]; on PostgreSQL: batched with
/// concurrent placements); whatever it does not place — the ticket unknown, held
/// (possibly by an expired order), changed meanwhile, too few units free, no admission —
/// is decided in a transaction.
pub async fn place(
    store: &Store,
    placer: &Placer,
    ticket_id: &TicketId,
    user_id: &UserId,
    units: Units,
    at: At,
) -> Result<Order, PlaceError> {
    if let Some(order) = place_batched(placer, ticket_id, user_id, units, at, None).await {
        return Ok(order);
    }
    let mut tx = store.begin().await?;
    let unclaimed = insert_in_tx(&mut tx, ticket_id, user_id, units, at).await?;
    let (order, _turn) = claim_in_tx(&mut tx, unclaimed).await?;
    tx.commit().await?;
    Ok(order)
}

/// What a request with an idempotency key stores with its order: the key's row for
/// the order's answer (`Keyed::json_row`); `None` when it cannot be made.
pub type Answer<'a> = &'a (dyn Fn(&Order) -> Option<serde_json::Value> + Sync);

/// [`place`]'s first way, through `placer` (PostgreSQL: batched with concurrent
/// placements): one unit of a ticket listed as one, or units of a listing of several
/// (with a queue: the buyer's admission spent with the order). With `answer` (a request
/// with an idempotency key), only the latter, its answer stored with the order. `None`:
/// not placed this way (the ticket not known to the batch, changed, too few units free,
/// no admission, ...); decide it in a transaction.
pub async fn place_batched(
    placer: &Placer,
    ticket_id: &TicketId,
    user_id: &UserId,
    units: Units,
    at: At,
    answer: Option<Answer<'_>>,
) -> Option<Order> {
    let ticket = placer.ticket(ticket_id).await?;
    let terms = &ticket.terms;
    let units = units.within(terms.per_order)?;
    if !terms.counted && (units != 1 || answer.is_some()) {
        return None;
    }
    let (order, event) = new_order(&ticket, user_id, units, at.order, None);
    let mut placement = Placement::new(order.clone(), event);
    let placed = if terms.counted {
        placement.admitted_at = terms.on_sale_at.map(|_| at.now);
        if let Some(answer) = answer {
            placement.answer = Some(answer(&order)?);
        }
        placer.claim(placement).await
    } else {
        placer.insert(placement).await
    };
    placed.then_some(order)
}

/// An order written in a transaction, with its event, its units not yet claimed: the
/// claim ([`claim_in_tx`]) locks the listing's row, which every buyer of the listing
/// claims, until the commit, so it comes last (after a request's idempotency key, too).
pub struct Unclaimed {
    order: Order,
    at: At,
}

impl Unclaimed {
    pub fn order(&self) -> &Order {
        &self.order
    }
}

/// An order in the caller's transaction, part one: the order, if its queue lets
/// `user_id` order, written with its event. (A request with an idempotency key stores
/// its answer between the parts: it commits with the order.)
pub async fn insert_in_tx(
    tx: &mut Tx,
    ticket_id: &TicketId,
    user_id: &UserId,
    units: Units,
    at: At,
) -> Result<Unclaimed, PlaceError> {
    let ticket = tickets::find(&mut *tx, ticket_id)
        .await?
        .ok_or(PlaceError::UnknownTicket)?;
    let units = units
        .within(ticket.terms.per_order)
        .ok_or(PlaceError::PerOrder(ticket.terms.per_order))?;
    match queue::gate(tx, &ticket, user_id, at.now).await? {
        Gate::Open => {}
        Gate::TooEarly => return Err(PlaceError::NotOnSale),
        Gate::Queued => return Err(PlaceError::Queued),
    }
    let (order, event) = new_order(&ticket, user_id, units, at.order, None);
    insert(tx, &order, None).await?;
    outbox::enqueue(tx, &event).await?;
    Ok(Unclaimed { order, at })
}

/// Part two: claim the order's units. Unpaid orders whose reservation ran out (past the
/// `reserved_until` on their row) no longer hold their units: when too few are free
/// they are cancelled here, in the same transaction (lazy expiry) — their units offered
/// to the waiting list first — and the claim is tried once more.
///
/// Hold the [`Turn`] until the commit: on a listing of many units this process's
/// claims take turns at its row here, not in PostgreSQL's lock queue.
pub async fn claim_in_tx(tx: &mut Tx, unclaimed: Unclaimed) -> Result<(Order, Turn), PlaceError> {
    let Unclaimed { order, at } = unclaimed;
    let (ticket, user_id, units) = (&order.ticket, &order.user_id, order.quantity);
    // The order's event before the turn: from the claim on, only the commit follows.
    tx.write_deferred().await?;
    let turn = turns::take(tx.backend(), &ticket.id, ticket.terms.counted).await;
    let counted = match claim::take_for_account(tx, &ticket.id, user_id, units).await? {
        Some(counted) => counted,
        None => {
            expire_lapsed(tx, &ticket.id, at).await?;
            match claim::take_for_account(tx, &ticket.id, user_id, units).await? {
                Some(counted) => counted,
                None => return Err(claim::refusal(tx, &ticket.id, &ticket.terms).await?.into()),
            }
        }
    };
    counted?;
    Ok((order, turn))
}

/// A new order for `units` of `ticket` (offered to waiting-list entry `entry`, if any)
/// and its `order:created`.
fn new_order(
    ticket: &TicketCopy,
    user_id: &UserId,
    units: i64,
    deadline: Deadline,
    entry: Option<&str>,
) -> (Order, Envelope) {
    let order = Order {
        id: OrderId::generate(),
        user_id: user_id.to_owned(),
        status: OrderStatus::Created,
        deadline,
        version: 0,
        ticket: ticket.clone(),
        quantity: units,
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
        quantity: units,
        waitlist_entry_id: entry.map(str::to_owned),
    });
    (order, event)
}

/// Cancel the unpaid orders holding `ticket` whose reservation ran out by `at.now`,
/// giving their units back (offered to the waiting list).
async fn expire_lapsed(
    tx: &mut Tx,
    ticket: &TicketId,
    at: At,
) -> Result<(), ticketing_store::Error> {
    static SQL: LazyLock<String> = LazyLock::new(expire_held_sql);
    let expired = query(&SQL)
        .bind(ticket)
        .bind(at.now.as_millis())
        .fetch_all(&mut *tx)
        .await?;
    for row in &expired {
        let (id, user, units): (OrderId, UserId, i64) =
            (row.get("id")?, row.get("user_id")?, row.get("quantity")?);
        claim::release(tx, ticket, &user, units).await?;
        if let Some(entry) = row.get::<Option<String>>("waitlist_entry_id")? {
            waitlist::offer_ended(tx, &entry, WaitlistStatus::Lapsed).await?;
        }
        outbox::enqueue(
            tx,
            &Envelope::new(&cancelled_event(id, row.get("version")?, ticket)),
        )
        .await?;
    }
    if !expired.is_empty() {
        offer_freed(tx, ticket, at.offer).await?;
    }
    Ok(())
}

/// Offer units of `ticket` that came free to its waiting list, in join order, while the
/// head's units are free (a head wanting more blocks those behind it). An offer is an
/// order placed for the waiter by the same claim — so live offers never exceed free
/// units — payable until `offer.expires_at`, announced by `waitlist:offered`. A head
/// whose account has no room left for its units lapses.
///
/// Called in the transaction that freed the units, which holds the listing's row: two
/// of them offer one after the other.
pub async fn offer_freed(
    tx: &mut Tx,
    ticket: &TicketId,
    offer: Deadline,
) -> Result<(), ticketing_store::Error> {
    // The listing is read once, and only when someone waits (most frees find no line).
    let mut listing = None;
    while let Some(head) = waitlist::head(tx, ticket).await? {
        if listing.is_none() {
            listing = tickets::find(&mut *tx, ticket).await?;
        }
        let Some(listing) = &listing else {
            return Ok(());
        };
        let (order, event) =
            new_order(listing, &head.user_id, head.quantity, offer, Some(&head.id));
        // The entry first: one that left meanwhile is passed over.
        if !waitlist::offered(tx, &head.id, &order.id, offer.expires_at).await? {
            continue;
        }
        let Some(taken) = claim::take(tx, ticket, head.quantity).await? else {
            waitlist::back_in_line(tx, &head.id).await?;
            return Ok(());
        };
        if claim::count_for_account(tx, ticket, &head.user_id, head.quantity, taken)
            .await?
            .is_err()
        {
            claim::give_back(tx, ticket, head.quantity).await?;
            waitlist::offer_ended(tx, &head.id, WaitlistStatus::Lapsed).await?;
            continue;
        }
        insert(tx, &order, Some(&head.id)).await?;
        outbox::enqueue(tx, &event).await?;
        outbox::enqueue(
            tx,
            &Envelope::new(&WaitlistOffered {
                id: head.id,
                ticket_id: ticket.to_owned(),
                user_id: head.user_id,
                order_id: order.id,
                quantity: head.quantity,
                expires_at: offer.expires_at.to_rfc3339(),
            }),
        )
        .await?;
    }
    Ok(())
}

/// Insert `order` (its units not yet claimed), offered to waiting-list `entry` if any:
/// the order's end ends the offer.
async fn insert(
    tx: &mut Tx,
    order: &Order,
    entry: Option<&str>,
) -> Result<(), ticketing_store::Error> {
    query(
        "INSERT INTO orders (id, user_id, ticket_id, status, expires_at, reserved_until, \
                             version, quantity, waitlist_entry_id) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
    )
    .bind(&order.id)
    .bind(&order.user_id)
    .bind(&order.ticket.id)
    .bind(order.status.as_str())
    .bind(order.deadline.expires_at.as_millis())
    .bind(order.deadline.reserved_until.as_millis())
    .bind(order.quantity)
    .bind(entry)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn cancelled_event(order_id: OrderId, version: i64, ticket_id: &TicketId) -> OrderCancelled {
    OrderCancelled {
        id: order_id,
        version,
        ticket: TicketRef {
            id: ticket_id.to_owned(),
        },
        cancel_reason: None,
    }
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

/// Cancel an open order (only the buyer's, when cancelled by the buyer), giving its
/// units back — offered to the waiting list, `offer` the deadline of an offer made
/// now; publishes `order:cancelled`. `None` when the order is not open (or not the
/// buyer's).
pub async fn cancel(
    tx: &mut Tx,
    id: &OrderId,
    reason: CancelReason,
    buyer: Option<&UserId>,
    offer: Deadline,
) -> Result<Option<(TicketId, i64)>, ticketing_store::Error> {
    let row = query(&format!(
        "UPDATE orders SET status = '{}', version = version + 1, cancel_reason = $3 \
         WHERE id = $1 AND ($2 = '' OR user_id = $2) AND status IN ({}) \
         RETURNING ticket_id, user_id, quantity, version, waitlist_entry_id",
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
    let (user, units): (UserId, i64) = (row.get("user_id")?, row.get("quantity")?);
    claim::release(tx, &ticket_id, &user, units).await?;
    let ended = match reason {
        CancelReason::Expired => WaitlistStatus::Lapsed,
        CancelReason::CancelledByBuyer | CancelReason::Refunded => WaitlistStatus::Left,
    };
    if let Some(entry) = row.get::<Option<String>>("waitlist_entry_id")? {
        waitlist::offer_ended(tx, &entry, ended).await?;
    }
    outbox::enqueue(
        tx,
        &Envelope::new(&cancelled_event(id.to_owned(), version, &ticket_id)),
    )
    .await?;
    offer_freed(tx, &ticket_id, offer).await?;
    Ok(Some((ticket_id, version)))
}

/// Cancel a paid order whose refund went through (a buyer's cancellation), giving its
/// units back — offered to the waiting list, `offer` the deadline of an offer made now;
/// publishes `order:cancelled` with `cancelReason: "refunded"`. `false` when the order
/// is not complete (a redelivery found it cancelled).
pub async fn cancel_paid(
    tx: &mut Tx,
    id: &OrderId,
    offer: Deadline,
) -> Result<bool, ticketing_store::Error> {
    let row = query(&format!(
        "UPDATE orders SET status = '{}', version = version + 1, cancel_reason = '{}' \
         WHERE id = $1 AND status = '{}' \
         RETURNING ticket_id, user_id, quantity, version",
        OrderStatus::Cancelled,
        CancelReason::Refunded.as_str(),
        OrderStatus::Complete,
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let (ticket_id, version): (TicketId, i64) = (row.get("ticket_id")?, row.get("version")?);
    let (user, units): (UserId, i64) = (row.get("user_id")?, row.get("quantity")?);
    claim::release(tx, &ticket_id, &user, units).await?;
    let event = cancelled_event(id.to_owned(), version, &ticket_id);
    let event = OrderCancelled {
        cancel_reason: Some(CancelReason::Refunded.as_str().to_owned()),
        ..event
    };
    outbox::enqueue(tx, &Envelope::new(&event)).await?;
    offer_freed(tx, &ticket_id, offer).await?;
    Ok(true)
}

/// Mark an open order paid, publishing `order:completed` (what passes are issued from).
/// `false` when it was not open (already complete, cancelled): a late payment completes
/// nothing, so it yields no pass.
pub async fn complete(tx: &mut Tx, id: &OrderId) -> Result<bool, ticketing_store::Error> {
    let done = query(&format!(
        "UPDATE orders SET status = '{}', version = version + 1 WHERE id = $1 AND status IN ({}) \
         RETURNING waitlist_entry_id, version, user_id, ticket_id, quantity",
        OrderStatus::Complete,
        open_states()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = done else { return Ok(false) };
    if let Some(entry) = row.get::<Option<String>>("waitlist_entry_id")? {
        waitlist::offer_ended(tx, &entry, WaitlistStatus::Purchased).await?;
    }
    outbox::enqueue(
        tx,
        &Envelope::new(&OrderCompleted {
            id: id.to_owned(),
            version: row.get("version")?,
            user_id: row.get("user_id")?,
            ticket: TicketRef {
                id: row.get("ticket_id")?,
            },
            quantity: row.get("quantity")?,
        }),
    )
    .await?;
    Ok(true)
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
    use std::time::Duration;

    use ticketing_contracts::{OrderId, TicketId, Timestamp, UserId};
    use ticketing_kit::testing::{TestBackend, TestEnv};
    use ticketing_store::{query, Store};

    use crate::domain::Deadline;
    use crate::placer::{Placement, Placer};

    /// On PostgreSQL the placer's one statement places one unit of a free ticket listed
    /// as one (claimed, inserted, its event enqueued), and not a second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_placer_places_a_free_ticket_once() {
        let env = TestEnv::new(TestBackend::Postgres);
        let store = env
            .runtime
            .open_store(crate::SERVICE, &crate::MIGRATIONS)
            .await
            .unwrap();
        query("INSERT INTO tickets (id, title, price_cents, version) VALUES ('t', 'T', 100, 0)")
            .execute(store.writer())
            .await
            .unwrap();
        let placer = Placer::new(&store);
        let deadline = Deadline::new(
            Timestamp::now() + Duration::from_secs(60),
            Duration::from_secs(2),
        );
        for (buyer, placed) in [("a", true), ("b", false)] {
            let ticket = placer.ticket(&TicketId::from("t")).await.unwrap();
            let (order, event) = super::new_order(&ticket, &UserId::from(buyer), 1, deadline, None);
            assert_eq!(
                placer.insert(Placement::new(order, event)).await,
                placed,
                "{buyer}"
            );
        }
        let held: i64 = query("SELECT held FROM tickets WHERE id = 't'")
            .fetch_one(store.reader())
            .await
            .unwrap()
            .get("held")
            .unwrap();
        assert_eq!(held, 1);
        store.close().await;
    }

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
                .any(|step| step.contains("USING INDEX orders_holding_ticket")),
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
