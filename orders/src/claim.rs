//! The claim: an order takes its units of a listing in the transaction that inserts it,
//! by one conditional update of the listing's counter, and its account's share by one
//! conditional upsert (docs/decisions/0026-units-by-counter.md).
//!
//! No lock is taken before, no count is read first: the database decides, whatever the
//! timing, that a listing's live orders never hold more than its `quantity` and an
//! account never more than `maxPerAccount`. Every write that ends an order's hold
//! ([`release`]) gives its units back in the same transaction.

use ticketing_contracts::{TicketId, UserId};
use ticketing_store::{query, Tx};

use crate::tickets::Terms;

/// Why units were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A listing of one unit (the seed's way) that an order holds.
    #[error("ticket already reserved")]
    Reserved,
    #[error("sold out")]
    SoldOut,
    /// Fewer units free than asked for.
    #[error("only {0} left")]
    OnlyLeft(i64),
    /// The account would hold more than `maxPerAccount`.
    #[error("at most {0} per account")]
    PerAccount(i64),
}

/// Take `units` of listing `ticket`; `Ok(false)` when too few are free (the caller may
/// free lapsed holds and try again).
pub async fn take(
    tx: &mut Tx,
    ticket: &TicketId,
    units: i64,
) -> Result<bool, ticketing_store::Error> {
    let taken = query(
        "UPDATE tickets SET held = held + $2 \
         WHERE id = $1 AND held + $2 <= COALESCE(quantity, 1)",
    )
    .bind(ticket)
    .bind(units)
    .execute(&mut *tx)
    .await?;
    Ok(taken == 1)
}

/// Count `units` more for `user` on `ticket`, unless that makes more than the listing's
/// `per_account`.
pub async fn count_for_account(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    units: i64,
    terms: &Terms,
) -> Result<Result<(), Refused>, ticketing_store::Error> {
    if units > terms.per_account {
        return Ok(Err(Refused::PerAccount(terms.per_account)));
    }
    let counted = query(
        "INSERT INTO account_units (ticket_id, user_id, units) VALUES ($1, $2, $3) \
         ON CONFLICT (ticket_id, user_id) DO UPDATE \
         SET units = account_units.units + excluded.units \
         WHERE account_units.units + excluded.units <= $4",
    )
    .bind(ticket)
    .bind(user)
    .bind(units)
    .bind(terms.per_account)
    .execute(&mut *tx)
    .await?;
    Ok(if counted == 1 {
        Ok(())
    } else {
        Err(Refused::PerAccount(terms.per_account))
    })
}

/// Why [`take`] could not: what is free of the listing as this transaction sees it.
pub async fn refusal(
    tx: &mut Tx,
    ticket: &TicketId,
    terms: &Terms,
) -> Result<Refused, ticketing_store::Error> {
    if !terms.counted {
        return Ok(Refused::Reserved);
    }
    let row = query("SELECT held, COALESCE(quantity, 1) AS quantity FROM tickets WHERE id = $1")
        .bind(ticket)
        .fetch_optional(&mut *tx)
        .await?;
    let free = match row {
        Some(row) => row.get::<i64>("quantity")? - row.get::<i64>("held")?,
        None => 0,
    };
    Ok(if free <= 0 {
        Refused::SoldOut
    } else {
        Refused::OnlyLeft(free)
    })
}

/// Give back `units` of `ticket` just taken for an order that is not placed after all.
pub async fn give_back(
    tx: &mut Tx,
    ticket: &TicketId,
    units: i64,
) -> Result<(), ticketing_store::Error> {
    query("UPDATE tickets SET held = held - $2 WHERE id = $1")
        .bind(ticket)
        .bind(units)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Give back `units` of `ticket` held by an order of `user` that no longer holds them
/// (cancelled, expired): the listing's counter and the account's share.
pub async fn release(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    units: i64,
) -> Result<(), ticketing_store::Error> {
    query("UPDATE tickets SET held = held - $2 WHERE id = $1")
        .bind(ticket)
        .bind(units)
        .execute(&mut *tx)
        .await?;
    query("UPDATE account_units SET units = units - $3 WHERE ticket_id = $1 AND user_id = $2")
        .bind(ticket)
        .bind(user)
        .bind(units)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
