//! The claim: an order takes its units of a listing in the transaction that inserts it,
//! by one conditional update of the listing's counter, and its account's share by one
//! conditional upsert (docs/decisions/0026-units-by-counter.md).
//!
//! No lock is taken before, no count is read first: the database decides, whatever the
//! timing, that a listing's live orders never hold more than its `quantity` and an
//! account never more than `maxPerAccount`. Every write that ends an order's hold
//! ([`release`]) gives its units back in the same transaction.

use ticketing_contracts::{TicketId, UserId};
use ticketing_store::{query, Backend, Tx};

use crate::domain::HOLDS_TICKET;
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

/// Units taken, and the listing's terms as the claim found them (its row locked).
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    /// Listed with a quantity: its accounts' shares are counted. A ticket listed the
    /// seed's way is one unit, so no account can hold more than one: its shares are
    /// counted from the moment it gets a quantity (`recount_accounts`).
    counted: bool,
    per_account: i64,
}

/// Take `units` of listing `ticket`; `None` when too few are free (the caller may free
/// lapsed holds and try again).
pub async fn take(
    tx: &mut Tx,
    ticket: &TicketId,
    units: i64,
) -> Result<Option<Taken>, ticketing_store::Error> {
    let row = query(
        "UPDATE tickets SET held = held + $2 \
         WHERE id = $1 AND held + $2 <= COALESCE(quantity, 1) \
         RETURNING quantity, COALESCE(max_per_account, 1) AS per_account",
    )
    .bind(ticket)
    .bind(units)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|row| {
        Ok(Taken {
            counted: row.get::<Option<i64>>("quantity")?.is_some(),
            per_account: row.get("per_account")?,
        })
    })
    .transpose()
}

/// Count `units` more for `user` on `ticket`, unless that makes more than the listing's
/// `per_account` (as [`take`] found it).
pub async fn count_for_account(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    units: i64,
    taken: Taken,
) -> Result<Result<(), Refused>, ticketing_store::Error> {
    if !taken.counted {
        return Ok(Ok(()));
    }
    if units > taken.per_account {
        return Ok(Err(Refused::PerAccount(taken.per_account)));
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
    .bind(taken.per_account)
    .execute(&mut *tx)
    .await?;
    Ok(if counted == 1 {
        Ok(())
    } else {
        Err(Refused::PerAccount(taken.per_account))
    })
}

/// [`take`] then [`count_for_account`]: `None` when too few units are free (nothing
/// taken), else whether the account had room (if not, the units are taken: roll back).
/// One statement on PostgreSQL: the listing's row, locked from here to the commit, is
/// the one every buyer of the listing waits for, so its lock spans one round trip fewer.
pub async fn take_for_account(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    units: i64,
) -> Result<Option<Result<(), Refused>>, ticketing_store::Error> {
    if tx.backend() == Backend::Sqlite {
        let Some(taken) = take(tx, ticket, units).await? else {
            return Ok(None);
        };
        return count_for_account(tx, ticket, user, units, taken)
            .await
            .map(Some);
    }
    // The insert reads `taken`, so it runs after the listing's row is locked.
    let row = query(
        "WITH taken AS (UPDATE tickets SET held = held + $3 \
           WHERE id = $1 AND held + $3 <= COALESCE(quantity, 1) \
           RETURNING quantity IS NOT NULL AS counted, \
             COALESCE(max_per_account, 1) AS per_account), \
         room AS (INSERT INTO account_units (ticket_id, user_id, units) \
           SELECT $1, $2, $3 FROM taken WHERE taken.counted AND $3 <= taken.per_account \
           ON CONFLICT (ticket_id, user_id) DO UPDATE \
           SET units = account_units.units + excluded.units \
           WHERE account_units.units + excluded.units <= (SELECT per_account FROM taken) \
           RETURNING 1) \
         SELECT counted, per_account, EXISTS (SELECT 1 FROM room) AS room FROM taken",
    )
    .bind(ticket)
    .bind(user)
    .bind(units)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|row| {
        let counted: bool = row.get("counted")?;
        Ok(if !counted || row.get::<bool>("room")? {
            Ok(())
        } else {
            Err(Refused::PerAccount(row.get("per_account")?))
        })
    })
    .transpose()
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

/// A listing listed as one unit just got a quantity: count its accounts' shares from
/// its live orders. Runs in the transaction that applies the change, after the
/// replica's row is written (locked): a claim either committed before (and is counted
/// here) or waits and finds the listing counted.
pub async fn recount_accounts(
    tx: &mut Tx,
    ticket: &TicketId,
) -> Result<(), ticketing_store::Error> {
    query("DELETE FROM account_units WHERE ticket_id = $1")
        .bind(ticket)
        .execute(&mut *tx)
        .await?;
    query(&format!(
        "INSERT INTO account_units (ticket_id, user_id, units) \
         SELECT ticket_id, user_id, sum(quantity) FROM orders \
         WHERE ticket_id = $1 AND {HOLDS_TICKET} GROUP BY ticket_id, user_id"
    ))
    .bind(ticket)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Give back `units` of `ticket` just taken for an order that is not placed after all
/// (its account's share was not counted); whether the listing has a quantity.
pub async fn give_back(
    tx: &mut Tx,
    ticket: &TicketId,
    units: i64,
) -> Result<bool, ticketing_store::Error> {
    let quantity = query("UPDATE tickets SET held = held - $2 WHERE id = $1 RETURNING quantity")
        .bind(ticket)
        .bind(units)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.get::<Option<i64>>("quantity"))
        .transpose()?
        .flatten();
    Ok(quantity.is_some())
}

/// Give back `units` of `ticket` held by an order of `user` that no longer holds them
/// (cancelled, expired): the listing's counter and, for a listing with a quantity, the
/// account's share.
pub async fn release(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    units: i64,
) -> Result<(), ticketing_store::Error> {
    if !give_back(tx, ticket, units).await? {
        return Ok(());
    }
    query("UPDATE account_units SET units = units - $3 WHERE ticket_id = $1 AND user_id = $2")
        .bind(ticket)
        .bind(user)
        .bind(units)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
