//! The `waitlist` table: a listing's line of accounts waiting for units, in join order.
//!
//! Offers are made where units come free (`orders::offer_freed`), in the transaction
//! that frees them; this module keeps the entries' rows.

use ticketing_contracts::api::waitlist::WaitlistStatus;
use ticketing_contracts::{OrderId, TicketId, Timestamp, UserId};
use ticketing_store::{query, Store, Tx};

/// An entry, with its place in line while waiting.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub ticket_id: TicketId,
    pub user_id: UserId,
    pub quantity: i64,
    pub status: WaitlistStatus,
    pub position: Option<i64>,
    pub joined_at: Timestamp,
    pub order_id: Option<OrderId>,
    pub offer_expires_at: Option<Timestamp>,
}

ticketing_kit::from_row!(|row| Entry {
    id,
    ticket_id,
    user_id,
    quantity,
    status: row.parse("status")?,
    position,
    joined_at: Timestamp::from_millis(row.get("joined_at")?),
    order_id,
    offer_expires_at: row
        .get::<Option<i64>>("offer_expires_at")?
        .map(Timestamp::from_millis),
});

/// An entry's columns and, while it waits, its position: the waiting entries of its
/// listing up to it (an index range of the line).
const SELECT: &str = "SELECT w.id, w.ticket_id, w.user_id, w.quantity, w.status, w.joined_at, \
    w.order_id, w.offer_expires_at, \
    CASE WHEN w.status = 'waiting' THEN \
      (SELECT count(*) FROM waitlist l \
       WHERE l.ticket_id = w.ticket_id AND l.status = 'waiting' AND l.id <= w.id) \
    END AS position \
    FROM waitlist w";

/// Why an account could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// Enough units are free to order now.
    #[error("tickets are available")]
    Available,
    /// The account is in line (or holds an offer) for this listing already.
    #[error("already on the waiting list")]
    AlreadyIn,
}

/// Put `user` in line for `units` of `ticket`, unless that many are free.
///
/// The listing's row is locked first (a write that changes nothing), as every write
/// that frees units does: a join and a release are one after the other, so either the
/// join sees the units free or the release sees the entry and offers them.
pub async fn join(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    units: i64,
    now: Timestamp,
) -> Result<Result<Entry, JoinRefused>, ticketing_store::Error> {
    let row = query(
        "UPDATE tickets SET held = held WHERE id = $1 \
         RETURNING COALESCE(quantity, 1) - held AS free",
    )
    .bind(ticket)
    .fetch_one(&mut *tx)
    .await?;
    if row.get::<i64>("free")? >= units {
        return Ok(Err(JoinRefused::Available));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let joined = query(
        "INSERT INTO waitlist (id, ticket_id, user_id, quantity, status, joined_at) \
         VALUES ($1, $2, $3, $4, 'waiting', $5) \
         ON CONFLICT (ticket_id, user_id) WHERE status IN ('waiting', 'offered') DO NOTHING",
    )
    .bind(&id)
    .bind(ticket)
    .bind(user)
    .bind(units)
    .bind(now.as_millis())
    .execute(&mut *tx)
    .await?;
    if joined == 0 {
        return Ok(Err(JoinRefused::AlreadyIn));
    }
    let entry = query(&format!("{SELECT} WHERE w.id = $1"))
        .bind(&id)
        .fetch_one_as(&mut *tx)
        .await?;
    Ok(Ok(entry))
}

/// The head of `ticket`'s line: its first waiting entry.
pub async fn head(tx: &mut Tx, ticket: &TicketId) -> Result<Option<Entry>, ticketing_store::Error> {
    query(&format!(
        "{SELECT} WHERE w.ticket_id = $1 AND w.status = 'waiting' ORDER BY w.id LIMIT 1"
    ))
    .bind(ticket)
    .fetch_optional_as(&mut *tx)
    .await
}

/// Mark a waiting entry offered by `order`; false when it no longer waits.
pub async fn offered(
    tx: &mut Tx,
    id: &str,
    order: &OrderId,
    expires_at: Timestamp,
) -> Result<bool, ticketing_store::Error> {
    let marked = query(
        "UPDATE waitlist SET status = 'offered', order_id = $2, offer_expires_at = $3 \
         WHERE id = $1 AND status = 'waiting'",
    )
    .bind(id)
    .bind(order)
    .bind(expires_at.as_millis())
    .execute(&mut *tx)
    .await?;
    Ok(marked == 1)
}

/// Put an entry just marked offered back in line, at its place (its units were not free
/// after all).
pub async fn back_in_line(tx: &mut Tx, id: &str) -> Result<(), ticketing_store::Error> {
    query(
        "UPDATE waitlist SET status = 'waiting', order_id = NULL, offer_expires_at = NULL          WHERE id = $1 AND status = 'offered'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The offer to entry `id` ended as `status` (purchased, lapsed, left).
pub async fn offer_ended(
    tx: &mut Tx,
    id: &str,
    status: WaitlistStatus,
) -> Result<(), ticketing_store::Error> {
    query("UPDATE waitlist SET status = $2 WHERE id = $1 AND status = 'offered'")
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Leave the line (or decline the offer) of the caller's entry `id`: the entry as it
/// was, `None` when it is not live.
pub async fn leave(
    tx: &mut Tx,
    id: &str,
    user: &UserId,
) -> Result<Option<Entry>, ticketing_store::Error> {
    let before = query(&format!(
        "{SELECT} WHERE w.id = $1 AND w.user_id = $2 AND w.status IN ('waiting', 'offered')"
    ))
    .bind(id)
    .bind(user)
    .fetch_optional_as::<Entry>(&mut *tx)
    .await?;
    let Some(entry) = before else { return Ok(None) };
    let left = query("UPDATE waitlist SET status = 'left' WHERE id = $1 AND status = $2")
        .bind(id)
        .bind(entry.status.as_str())
        .execute(&mut *tx)
        .await?;
    Ok((left == 1).then_some(entry))
}

pub async fn find(store: &Store, id: &str) -> Result<Option<Entry>, ticketing_store::Error> {
    query(&format!("{SELECT} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional_as(store.reader())
        .await
}

pub async fn list_for_user(
    store: &Store,
    user: &UserId,
) -> Result<Vec<Entry>, ticketing_store::Error> {
    query(&format!("{SELECT} WHERE w.user_id = $1 ORDER BY w.id"))
        .bind(user)
        .fetch_all_as(store.reader())
        .await
}
