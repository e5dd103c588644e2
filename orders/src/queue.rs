//! On-sale queues: who may order a listing with `on_sale_at`, and when (issue 30).
//!
//! Joins open 30 minutes before the sale. Whoever joins before it gets a random draw
//! (from the operating system's CSPRNG): arriving first earns nothing. At the sale one
//! statement ranks them by draw; later joins take the next rank in arrival order. From
//! the sale on, the pacer (`pacer.rs`, in every orders process) admits the head, never
//! more unused admissions than free units and at most the configured rate; an admission
//! lets its account place one order within 120 s, spent by a conditional update in that
//! order's transaction. Everything lives in the orders database: any process answers,
//! and a restart loses nothing. The queue stays in force until nobody waits.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use ticketing_contracts::api::queue::{QueueStatus, ADMISSION_SECONDS, OPENS_BEFORE_SECONDS};
use ticketing_contracts::{TicketId, Timestamp, UserId};
use ticketing_store::{query, Backend, On, Store, Tx};

use crate::tickets::TicketCopy;

/// Where an account stands in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub status: QueueStatus,
    pub position: Option<i64>,
    pub eta_seconds: Option<i64>,
    pub opens_at: Timestamp,
    pub admitted_until: Option<Timestamp>,
}

/// The admission rate the pacer keeps to, for estimates.
#[derive(Debug, Clone, Copy)]
pub struct Rate(pub u32);

impl Rate {
    fn per_second(self) -> i64 {
        i64::from(self.0.max(1))
    }

    /// Seconds until `position` is admitted at this rate.
    fn eta(self, position: i64) -> i64 {
        (position + self.per_second() - 1) / self.per_second()
    }
}

/// Why a queue was not joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    #[error("unknown listing")]
    Unknown,
    /// No `onSaleAt`: there is no queue, order at once.
    #[error("no queue")]
    NoQueue,
    /// More than 30 minutes before the sale.
    #[error("not on sale yet")]
    TooEarly,
}

/// What an order for a listing needs from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No queue in force (none, or nobody waits any more), or the caller's admission
    /// was just spent: order.
    Open,
    /// More than 30 minutes before the sale.
    TooEarly,
    /// Join (or stay in) the queue.
    Queued,
}

fn opens(on_sale_at: Timestamp) -> Timestamp {
    Timestamp::from_millis(on_sale_at.as_millis() - OPENS_BEFORE_SECONDS * 1000)
}

/// In the order's transaction: may `user` order `listing` at `now`? Spends the caller's
/// admission when it has one.
pub async fn gate(
    tx: &mut Tx,
    listing: &TicketCopy,
    user: &UserId,
    now: Timestamp,
) -> Result<Gate, ticketing_store::Error> {
    let Some(on_sale_at) = listing.terms.on_sale_at else {
        return Ok(Gate::Open);
    };
    if now < opens(on_sale_at) {
        return Ok(Gate::TooEarly);
    }
    let spent = query(
        "UPDATE queue_entries SET used_at = $3 \
         WHERE ticket_id = $1 AND user_id = $2 AND admitted_until > $3 AND used_at IS NULL",
    )
    .bind(&listing.id)
    .bind(user)
    .bind(now.as_millis())
    .execute(&mut *tx)
    .await?;
    if spent == 1 {
        return Ok(Gate::Open);
    }
    if now < on_sale_at {
        return Ok(Gate::Queued);
    }
    // From the sale on, the queue is in force while anybody waits in it (or it has not
    // ranked its early joins yet).
    let row = query(
        "SELECT ranked, next_rank - 1 - admitted_through AS waiting FROM queues \
         WHERE ticket_id = $1",
    )
    .bind(&listing.id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match row {
        Some(row) if row.get::<i64>("ranked")? == 0 || row.get::<i64>("waiting")? > 0 => {
            Gate::Queued
        }
        _ => Gate::Open,
    })
}

/// Listings this process has seen hold a buyer back: only orders for these pay for the
/// read-only [`precheck`] (every other order goes straight to its transaction). A hint,
/// never a decision: a listing missing here is decided by [`gate`] as before.
#[derive(Debug, Clone, Default)]
pub struct Queued(Arc<Mutex<HashSet<TicketId>>>);

/// More listings than a process would see queue at once: beyond, the hint starts over.
const QUEUED_HINTS: usize = 10_000;

impl Queued {
    pub fn note(&self, ticket: &TicketId) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if set.len() >= QUEUED_HINTS {
            set.clear();
        }
        set.insert(ticket.clone());
    }

    pub fn may_hold(&self, ticket: &TicketId) -> bool {
        let set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.contains(ticket)
    }
}

/// What [`precheck`] found holding a buyer back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// More than 30 minutes before the sale.
    TooEarly,
    /// The queue is in force: the caller's place when it keeps one (the answer, no
    /// write), `None` when it must join (or join again).
    Queued(Option<Place>),
}

/// Before any write, from a snapshot: `Some` when the queue certainly holds `user` back
/// from ordering `ticket` at `now` (it would be [`gate`]'s answer too); `None` when the
/// order's transaction must decide (an admission to spend, or no queue in force). A
/// waiting buyer's every poll is then one read, not a turn at the database's writer.
pub async fn precheck(
    store: &Store,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    rate: Rate,
) -> Result<Option<Held>, ticketing_store::Error> {
    let Some(standing) = standing(store.reader(), ticket, user).await? else {
        return Ok(None);
    };
    let Some(on_sale_at) = standing.on_sale_at else {
        return Ok(None);
    };
    if now < opens(on_sale_at) {
        return Ok(Some(Held::TooEarly));
    }
    let place = standing.place(now, rate);
    if place
        .as_ref()
        .is_some_and(|p| p.status == QueueStatus::Admitted)
    {
        return Ok(None);
    }
    let in_force = now < on_sale_at
        || match standing.queue {
            None => false,
            Some(q) => !q.ranked || q.waiting > 0,
        };
    Ok(in_force.then(|| Held::Queued(place.filter(keeps))))
}

/// Whether a joiner keeps this place (one in line, admitted, or told sold out) rather
/// than going to the back (its admission used or run out).
fn keeps(place: &Place) -> bool {
    match place.status {
        QueueStatus::Waiting | QueueStatus::Admitted | QueueStatus::SoldOut => true,
        QueueStatus::Used | QueueStatus::Expired => false,
    }
}

/// A listing's queue as one account sees it: the listing, its queue, the account's entry.
#[derive(Debug, Clone)]
struct Standing {
    on_sale_at: Option<Timestamp>,
    free: i64,
    queue: Option<QueueRow>,
    entry: Option<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct QueueRow {
    /// The early joins' draws are ranked (the sale has begun).
    ranked: bool,
    admitted_through: i64,
    /// Ranks taken and not yet admitted.
    waiting: i64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    rank: Option<i64>,
    admitted_until: Option<i64>,
    used_at: Option<i64>,
}

/// One read: every waiting buyer asks again and again. `None`: no such listing.
async fn standing<'a>(
    on: impl Into<On<'a>>,
    ticket: &TicketId,
    user: &UserId,
) -> Result<Option<Standing>, ticketing_store::Error> {
    let row = query(
        "SELECT t.on_sale_at, COALESCE(t.quantity, 1) - t.held AS free, \
         q.ranked, q.admitted_through, q.next_rank - 1 - q.admitted_through AS waiting, \
         e.joined_at, e.rank, e.admitted_until, e.used_at \
         FROM tickets t LEFT JOIN queues q ON q.ticket_id = t.id \
         LEFT JOIN queue_entries e ON e.ticket_id = t.id AND e.user_id = $2 \
         WHERE t.id = $1",
    )
    .bind(ticket)
    .bind(user)
    .fetch_optional(on)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let queue = match row.get::<Option<i64>>("ranked")? {
        None => None,
        Some(ranked) => Some(QueueRow {
            ranked: ranked != 0,
            admitted_through: row.get("admitted_through")?,
            waiting: row.get("waiting")?,
        }),
    };
    let entry = match row.get::<Option<i64>>("joined_at")? {
        None => None,
        Some(_) => Some(Entry {
            rank: row.get("rank")?,
            admitted_until: row.get("admitted_until")?,
            used_at: row.get("used_at")?,
        }),
    };
    Ok(Some(Standing {
        on_sale_at: row
            .get::<Option<i64>>("on_sale_at")?
            .map(Timestamp::from_millis),
        free: row.get("free")?,
        queue,
        entry,
    }))
}

impl Standing {
    /// The account's place; `None` when it is not in the queue (or there is none).
    fn place(&self, now: Timestamp, rate: Rate) -> Option<Place> {
        let (on_sale_at, queue, entry) = (self.on_sale_at?, self.queue?, self.entry?);
        Some(place_from(
            entry,
            queue.admitted_through,
            self.free,
            on_sale_at,
            now,
            rate,
        ))
    }
}

/// Join `ticket`'s queue (idempotent per account: one already in line keeps its place;
/// one whose admission was used or ran out goes to the back), and where it stands.
///
/// On PostgreSQL a join is two statements: a read, then one write that answers with the
/// place (a drop's crowd joins by the thousand a second, and each statement is a turn of
/// the machine's PostgreSQL; a join was seven).
pub async fn join(
    store: &Store,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    rate: Rate,
) -> Result<Result<Place, JoinRefused>, ticketing_store::Error> {
    let Some(standing) = standing(store.reader(), ticket, user).await? else {
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
        // A late join once the draws are ranked: one statement (see `join_late_pg`).
        if let Some(place) = join_late_pg(store, ticket, user, now, on_sale_at, rate).await? {
            return Ok(Ok(place));
        }
    } else if let Some(place) = join_in_tx(store, ticket, user, now, on_sale_at, rate).await? {
        return Ok(Ok(place));
    }
    // Raced by another join of the same account (or ranked meanwhile): read the outcome.
    let place = place_of(store, ticket, user, now, rate).await?;
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
/// ranked if nobody has yet, then the next rank. The place when PostgreSQL's statement
/// answered with it; `None`: read it.
async fn join_in_tx(
    store: &Store,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    on_sale_at: Timestamp,
    rate: Rate,
) -> Result<Option<Place>, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    create_queue(&mut tx, ticket).await?;
    rank_early_joins(&mut tx, ticket).await?;
    if tx.backend() == Backend::Sqlite {
        join_late_sqlite(&mut tx, ticket, user, now).await?;
        tx.commit().await?;
        return Ok(None);
    }
    tx.commit().await?;
    // A transaction of its own, after the ranking's.
    join_late_pg(store, ticket, user, now, on_sale_at, rate).await
}

/// Is `user` in `ticket`'s line (not admitted, or admitted and neither used nor run
/// out)? The condition on an entry `e`; `$1` the listing, `$2` the account, `$3` now.
const IN_LINE: &str = "EXISTS (SELECT 1 FROM queue_entries e WHERE e.ticket_id = $1 \
    AND e.user_id = $2 AND e.used_at IS NULL \
    AND (e.admitted_until IS NULL OR e.admitted_until > $3))";

/// The next rank for one not in line (a new join, or one whose admission was used or ran
/// out: to the back), in arrival order.
const REJOIN: &str =
    "ON CONFLICT (ticket_id, user_id) DO UPDATE SET joined_at = excluded.joined_at, \
    rank = excluded.rank, draw = NULL, admitted_until = NULL, used_at = NULL";

/// A late join on PostgreSQL, once the draws are ranked (the queue's `ranked`): one
/// statement, a transaction of its own, takes the next rank, writes the entry and
/// answers with the place, so the queue's row (every late join's turn) is locked for
/// that statement's run and its commit on the server only, never across a round trip
/// (late joins queued on that lock by the hundred in a drop). `None` when it took no
/// rank: the draws are not ranked yet (the caller ranks them in a transaction first) or
/// the account is in line.
///
/// Two joins of one account at once both see it out of line (the statement's snapshot),
/// and the second takes a rank after the first: the account keeps one place, the later,
/// and the line a gap that the pacer's cursor passes (nobody is admitted for it).
async fn join_late_pg(
    store: &Store,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    on_sale_at: Timestamp,
    rate: Rate,
) -> Result<Option<Place>, ticketing_store::Error> {
    static JOIN: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH taken AS (UPDATE queues SET next_rank = next_rank + 1 \
                WHERE ticket_id = $1 AND ranked = 1 AND NOT {IN_LINE} \
                RETURNING next_rank - 1 AS rank, admitted_through), \
             joined AS (INSERT INTO queue_entries (ticket_id, user_id, joined_at, rank) \
                SELECT $1, $2, $3, rank FROM taken {REJOIN} RETURNING rank) \
             SELECT joined.rank, taken.admitted_through, \
                COALESCE(t.quantity, 1) - t.held AS free \
             FROM joined, taken, tickets t WHERE t.id = $1"
        )
    });
    let row = query(&JOIN)
        .bind(ticket)
        .bind(user)
        .bind(now.as_millis())
        .fetch_optional(store.writer())
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let entry = Entry {
        rank: row.get("rank")?,
        admitted_until: None,
        used_at: None,
    };
    let (admitted_through, free) = (row.get("admitted_through")?, row.get("free")?);
    Ok(Some(place_from(
        entry,
        admitted_through,
        free,
        on_sale_at,
        now,
        rate,
    )))
}

/// The queue's next rank, taken (the queue's row stays locked until the commit).
async fn take_rank(tx: &mut Tx, ticket: &TicketId) -> Result<i64, ticketing_store::Error> {
    query(
        "UPDATE queues SET next_rank = next_rank + 1 WHERE ticket_id = $1 \
         RETURNING next_rank - 1 AS rank",
    )
    .bind(ticket)
    .fetch_one(tx)
    .await?
    .get("rank")
}

/// A late join on SQLite (one writer: no lock to hold short), where an update cannot feed
/// an insert in one statement.
async fn join_late_sqlite(
    tx: &mut Tx,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
) -> Result<(), ticketing_store::Error> {
    let in_line: i64 = query(&format!("SELECT {IN_LINE} AS in_line"))
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

/// Where `user` stands in `ticket`'s queue; `None` when not in it (or no queue). One
/// read: every waiting buyer asks again and again.
pub async fn place_of(
    store: &Store,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    rate: Rate,
) -> Result<Option<Place>, ticketing_store::Error> {
    let standing = standing(store.reader(), ticket, user).await?;
    Ok(standing.and_then(|s| s.place(now, rate)))
}

/// Seconds until the sale: an early joiner's wait, plus a draw's.
fn draw_eta(on_sale_at: Timestamp, now: Timestamp) -> i64 {
    (on_sale_at.as_millis() - now.as_millis()).max(0) / 1000
}

fn place_from(
    entry: Entry,
    admitted_through: i64,
    free: i64,
    on_sale_at: Timestamp,
    now: Timestamp,
    rate: Rate,
) -> Place {
    let mut place = Place {
        status: QueueStatus::Waiting,
        position: None,
        eta_seconds: None,
        opens_at: on_sale_at,
        admitted_until: None,
    };
    if entry.used_at.is_some() {
        place.status = QueueStatus::Used;
    } else if let Some(until) = entry.admitted_until {
        if until > now.as_millis() {
            place.status = QueueStatus::Admitted;
            place.admitted_until = Some(Timestamp::from_millis(until));
        } else {
            place.status = QueueStatus::Expired;
        }
    } else if free <= 0 && now >= on_sale_at {
        place.status = QueueStatus::SoldOut;
    } else if let Some(rank) = entry.rank {
        let position = (rank - admitted_through).max(1);
        place.position = Some(position);
        place.eta_seconds = Some(rate.eta(position));
    } else {
        place.eta_seconds = Some(draw_eta(on_sale_at, now));
    }
    place
}

/// At the sale, once: rank the early joins by their draw, and start the late ones after
/// them. Whoever comes first does it (a join, the pacer); the conditional update makes
/// it once.
async fn rank_early_joins(tx: &mut Tx, ticket: &TicketId) -> Result<(), ticketing_store::Error> {
    let first = query("UPDATE queues SET ranked = 1 WHERE ticket_id = $1 AND ranked = 0")
        .bind(ticket)
        .execute(&mut *tx)
        .await?;
    if first == 0 {
        return Ok(());
    }
    query(
        "UPDATE queue_entries SET rank = drawn.n \
         FROM (SELECT user_id, row_number() OVER (ORDER BY draw, user_id) AS n \
               FROM queue_entries WHERE ticket_id = $1 AND rank IS NULL) AS drawn \
         WHERE queue_entries.ticket_id = $1 AND queue_entries.user_id = drawn.user_id",
    )
    .bind(ticket)
    .execute(&mut *tx)
    .await?;
    query(
        "UPDATE queues SET next_rank = \
           (SELECT count(*) FROM queue_entries WHERE ticket_id = $1) + 1 \
         WHERE ticket_id = $1",
    )
    .bind(ticket)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Early joins drawn after the draws were ranked: a join that read the clock just before
/// the sale and wrote just after (nothing orders the two; locking the queue's row in
/// every early join would make 1,000 joins a second queue on it). They take the next
/// ranks, as late joins, in arrival order. An index probe when there are none.
async fn rank_stragglers(tx: &mut Tx, ticket: &TicketId) -> Result<(), ticketing_store::Error> {
    let stragglers: Vec<String> = query(
        "SELECT user_id FROM queue_entries WHERE ticket_id = $1 AND rank IS NULL \
         ORDER BY joined_at, user_id LIMIT 100",
    )
    .bind(ticket)
    .scalars(&mut *tx)
    .await?;
    for user in stragglers {
        let rank = take_rank(tx, ticket).await?;
        query(
            "UPDATE queue_entries SET rank = $3 \
             WHERE ticket_id = $1 AND user_id = $2 AND rank IS NULL",
        )
        .bind(ticket)
        .bind(&user)
        .bind(rank)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One step of the pacer for every queue in force at `now`: admit the head, as many as
/// the rate allows since the last admission (at most a second's worth), never more
/// unused admissions than free units. Returns how many were admitted.
pub async fn pace(
    store: &Store,
    now: Timestamp,
    rate: Rate,
) -> Result<i64, ticketing_store::Error> {
    let due = query(
        "SELECT q.ticket_id FROM queues q JOIN tickets t ON t.id = q.ticket_id \
         WHERE t.on_sale_at <= $1 AND (q.ranked = 0 OR q.admitted_through < q.next_rank - 1 \
           OR EXISTS (SELECT 1 FROM queue_entries e WHERE e.ticket_id = q.ticket_id \
             AND e.rank IS NULL))",
    )
    .bind(now.as_millis())
    .fetch_all(store.reader())
    .await?;
    let mut admitted = 0;
    for row in due {
        let ticket: TicketId = row.get("ticket_id")?;
        admitted += admit(store, &ticket, now, rate).await?;
    }
    Ok(admitted)
}

async fn admit(
    store: &Store,
    ticket: &TicketId,
    now: Timestamp,
    rate: Rate,
) -> Result<i64, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    rank_early_joins(&mut tx, ticket).await?;
    rank_stragglers(&mut tx, ticket).await?;
    let row = query(
        "SELECT q.admitted_through, q.next_rank, q.admitted_at, \
         COALESCE(t.quantity, 1) - t.held AS free, \
         (SELECT count(*) FROM queue_entries e WHERE e.ticket_id = q.ticket_id \
            AND e.admitted_until IS NOT NULL AND e.admitted_until > $2 \
            AND e.used_at IS NULL) AS unused \
         FROM queues q JOIN tickets t ON t.id = q.ticket_id WHERE q.ticket_id = $1",
    )
    .bind(ticket)
    .bind(now.as_millis())
    .fetch_one(&mut tx)
    .await?;
    let seen: i64 = row.get("admitted_through")?;
    let waiting = row.get::<i64>("next_rank")? - 1 - seen;
    let room = row.get::<i64>("free")? - row.get::<i64>("unused")?;
    let since = now.as_millis() - row.get::<i64>("admitted_at")?;
    let allowed = (rate.per_second() * since / 1000).min(rate.per_second());
    let n = waiting.min(room).min(allowed);
    if n <= 0 {
        tx.commit().await?;
        return Ok(0);
    }
    let moved = query(
        "UPDATE queues SET admitted_through = admitted_through + $3, admitted_at = $4 \
         WHERE ticket_id = $1 AND admitted_through = $2",
    )
    .bind(ticket)
    .bind(seen)
    .bind(n)
    .bind(now.as_millis())
    .execute(&mut tx)
    .await?;
    if moved == 0 {
        // Another process moved the cursor meanwhile: its admissions stand.
        return Ok(0);
    }
    let until = now + Duration::from_secs(ADMISSION_SECONDS as u64);
    query(
        "UPDATE queue_entries SET admitted_until = $4 \
         WHERE ticket_id = $1 AND rank > $2 AND rank <= $3 AND admitted_until IS NULL",
    )
    .bind(ticket)
    .bind(seen)
    .bind(seen + n)
    .bind(until.as_millis())
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}
