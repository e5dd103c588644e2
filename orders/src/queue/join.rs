//! Joining a queue: an early join's draw, a late join's rank (issue 30).

use std::sync::LazyLock;

use ticketing_contracts::api::queue::QueueStatus;
use ticketing_contracts::{TicketId, Timestamp, UserId};
use ticketing_store::{query, Backend, Store, Tx};

use super::late::{LateJoins, Ranked};
use super::rank::{rank_early_joins, take_rank};
use super::{draw_eta, keeps, opens, read_standing, JoinRefused, Place, Queued, Rate};

/// Join `ticket`'s queue (idempotent per account: one already in line keeps its place;
/// one whose admission was used or ran out goes to the back), and where it stands.
///
/// On PostgreSQL a late join is one write that answers with the place, decided on the
/// listing as this process read it lately ([`Queued`]), and late joins arriving together
/// share it ([`LateJoins`]); an early one is a read and a write (a drop's crowd joins by
/// the thousand a second, and each statement is a turn of the machine's PostgreSQL; a
/// join was seven).
pub async fn join(
    store: &Store,
    queued: &Queued,
    late: &LateJoins,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    rate: Rate,
) -> Result<Result<Place, JoinRefused>, ticketing_store::Error> {
    // A rank taken here: the process keeps it for the joiner's polls.
    let took = |ranked: Ranked, on_sale_at| {
        queued.took(ticket, user, ranked, rate);
        Ok(Ok(ranked.place(on_sale_at, now, rate)))
    };
    if let Some(on_sale_at) = late_on(store, queued, ticket, now, rate).await? {
        // Straight to the late join's statement, which passes over an account already in
        // line (its place is read below): most late joins are new, and their read was
        // one statement in two.
        if let Some(ranked) = late.join(store, ticket, user, now).await? {
            return took(ranked, on_sale_at);
        }
        return read_place(store, ticket, user, now, rate).await;
    }
    let Some(standing) = queued.standing(store, ticket, user, rate).await? else {
        return Ok(Err(JoinRefused::Unknown));
    };
    // One already in line keeps its place: a read. (Drawn before the sale and not yet
    // ranked, too: the pacer ranks the draws within a step of the sale. Ranking them here
    // instead held the crowd polling at the sale's first instant behind that one long
    // write.)
    if let Some(place) = standing.place(now, rate).filter(keeps) {
        return Ok(Ok(place));
    }
    let Some(on_sale_at) = standing.on_sale_at else {
        return Ok(Err(JoinRefused::NoQueue));
    };
    if now < opens(on_sale_at) {
        return Ok(Err(JoinRefused::TooEarly));
    }
    if now < on_sale_at {
        if join_early(store, ticket, user, now).await? {
            // Drawn, not ranked: the wait is the sale's.
            return Ok(Ok(Place {
                status: QueueStatus::Waiting,
                position: None,
                eta_seconds: Some(draw_eta(on_sale_at, now)),
                opens_at: on_sale_at,
                admitted_until: None,
            }));
        }
    } else if store.backend() == Backend::Postgres && standing.queue.is_some_and(|q| q.ranked) {
        // A late join once the draws are ranked, which the listing as read lately did not
        // show yet: one statement, maybe shared.
        if let Some(ranked) = late.join(store, ticket, user, now).await? {
            return took(ranked, on_sale_at);
        }
    } else if let Some(ranked) = join_in_tx(store, late, ticket, user, now).await? {
        return took(ranked, on_sale_at);
    }
    // Raced by another join of the same account (or ranked meanwhile): read the outcome.
    read_place(store, ticket, user, now, rate).await
}

/// On PostgreSQL, when the listing as this process saw it lately is on sale with its
/// draws ranked (so a join is a late one): its sale.
async fn late_on(
    store: &Store,
    queued: &Queued,
    ticket: &TicketId,
    now: Timestamp,
    rate: Rate,
) -> Result<Option<Timestamp>, ticketing_store::Error> {
    if store.backend() != Backend::Postgres {
        return Ok(None);
    }
    let Some(sale) = queued.sale(store, ticket, rate).await? else {
        return Ok(None);
    };
    let ranked = sale.queue.is_some_and(|q| q.ranked);
    Ok(sale.on_sale_at.filter(|at| ranked && now >= *at))
}

async fn read_place(
    store: &Store,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    rate: Rate,
) -> Result<Result<Place, JoinRefused>, ticketing_store::Error> {
    let standing = read_standing(store.reader(), ticket, user).await?;
    let place = standing.and_then(|s| s.place(now, rate));
    Ok(place.ok_or(JoinRefused::Unknown))
}

/// An early join: a draw, no rank yet (a second join changes nothing). Whether this one
/// drew.
async fn join_early(
    store: &Store,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
) -> Result<bool, ticketing_store::Error> {
    const DRAW: &str = "INSERT INTO queue_entries (ticket_id, user_id, joined_at, draw) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (ticket_id, user_id) DO NOTHING";
    // On PostgreSQL the queue's row (the first join's) and the entry in one statement.
    static DRAW_WITH_QUEUE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH queue AS (INSERT INTO queues (ticket_id) VALUES ($1) \
               ON CONFLICT (ticket_id) DO NOTHING) {DRAW}"
        )
    });
    let draw = (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64;
    let drawn = |sql: &'static str| {
        query(sql)
            .bind(ticket)
            .bind(user)
            .bind(now.as_millis())
            .bind(draw)
    };
    if store.backend() == Backend::Postgres {
        return Ok(drawn(&DRAW_WITH_QUEUE).execute(store.writer()).await? == 1);
    }
    let mut tx = store.begin().await?;
    create_queue(&mut tx, ticket).await?;
    let inserted = drawn(DRAW).execute(&mut tx).await?;
    tx.commit().await?;
    Ok(inserted == 1)
}

async fn create_queue(tx: &mut Tx, ticket: &TicketId) -> Result<(), ticketing_store::Error> {
    query("INSERT INTO queues (ticket_id) VALUES ($1) ON CONFLICT (ticket_id) DO NOTHING")
        .bind(ticket)
        .execute(tx)
        .await?;
    Ok(())
}

/// A late join in a transaction: the queue's row created if it is the first, the draws
/// ranked if nobody has yet, then the next rank. The rank when PostgreSQL's statement
/// answered with it; `None`: read the place.
async fn join_in_tx(
    store: &Store,
    late: &LateJoins,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
) -> Result<Option<Ranked>, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    create_queue(&mut tx, ticket).await?;
    rank_early_joins(&mut tx, ticket).await?;
    if tx.backend() == Backend::Sqlite {
        join_late_sqlite(&mut tx, ticket, user, now).await?;
        tx.commit().await?;
        return Ok(None);
    }
    tx.commit().await?;
    // A statement of its own, after the ranking's transaction.
    late.join(store, ticket, user, now).await
}

/// Is the account `user` in `ticket`'s line (not admitted, or admitted and neither used
/// nor run out) at `now`? The condition on an entry `e`, `$1` the listing; `user` and
/// `now` are SQL expressions.
pub(super) fn in_line(user: &str, now: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM queue_entries e WHERE e.ticket_id = $1 \
         AND e.user_id = {user} AND e.used_at IS NULL \
         AND (e.admitted_until IS NULL OR e.admitted_until > {now}))"
    )
}

/// The next rank for one not in line (a new join, or one whose admission was used or ran
/// out: to the back), in arrival order.
pub(super) const REJOIN: &str =
    "ON CONFLICT (ticket_id, user_id) DO UPDATE SET joined_at = excluded.joined_at, \
    rank = excluded.rank, draw = NULL, admitted_until = NULL, used_at = NULL";

/// A late join on SQLite (one writer: no lock to hold short), where an update cannot feed
/// an insert in one statement.
async fn join_late_sqlite(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
) -> Result<(), ticketing_store::Error> {
    let in_line: i64 = query(&format!("SELECT {} AS in_line", in_line("$2", "$3")))
        .bind(ticket)
        .bind(user)
        .bind(now.as_millis())
        .fetch_one(&mut *tx)
        .await?
        .get("in_line")?;
    if in_line != 0 {
        return Ok(());
    }
    let rank = take_rank(tx, ticket).await?;
    query(&format!(
        "INSERT INTO queue_entries (ticket_id, user_id, joined_at, rank) \
         VALUES ($1, $2, $3, $4) {REJOIN}"
    ))
    .bind(ticket)
    .bind(user)
    .bind(now.as_millis())
    .bind(rank)
    .execute(tx)
    .await?;
    Ok(())
}
