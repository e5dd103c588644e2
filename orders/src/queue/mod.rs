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

use ticketing_contracts::api::queue::{QueueStatus, OPENS_BEFORE_SECONDS};
use ticketing_contracts::{TicketId, Timestamp, UserId};
use ticketing_store::{query, On, Row, Store, Tx};

use crate::tickets::TicketCopy;

mod join;
mod late;
mod rank;
mod seen;

pub use join::join;
pub use late::LateJoins;
pub use rank::pace;
pub use seen::Queued;

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
    queued: &Queued,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    rate: Rate,
) -> Result<Option<Held>, ticketing_store::Error> {
    let Some(standing) = queued.standing(store, ticket, user, rate).await? else {
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

impl Entry {
    /// One that waits at this rank: neither admitted nor used.
    fn waiting(rank: i64) -> Entry {
        Entry {
            rank: Some(rank),
            admitted_until: None,
            used_at: None,
        }
    }

    /// The rank, while the entry waits for an admission.
    fn waiting_rank(self) -> Option<i64> {
        match self {
            Entry {
                rank: Some(rank),
                admitted_until: None,
                used_at: None,
            } => Some(rank),
            _ => None,
        }
    }
}

/// The listing's columns of a [`Standing`]: its sale and its queue (`t`, `q`).
const SALE: &str = "SELECT t.on_sale_at, COALESCE(t.quantity, 1) - t.held AS free, \
    q.ranked, q.admitted_through, q.next_rank - 1 - q.admitted_through AS waiting";

/// One read: every waiting buyer asks again and again. `None`: no such listing.
async fn read_standing<'a>(
    on: impl Into<On<'a>>,
    ticket: &TicketId,
    user: &UserId,
) -> Result<Option<Standing>, ticketing_store::Error> {
    let row = query(&format!(
        "{SALE}, e.joined_at, e.rank, e.admitted_until, e.used_at \
         FROM tickets t LEFT JOIN queues q ON q.ticket_id = t.id \
         LEFT JOIN queue_entries e ON e.ticket_id = t.id AND e.user_id = $2 \
         WHERE t.id = $1"
    ))
    .bind(ticket)
    .bind(user)
    .fetch_optional(on)
    .await?;
    let Some(row) = row else {
        return Ok(None);
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
        entry,
        ..sale_of(&row)?
    }))
}

/// The listing and its queue, no account's entry. `None`: no such listing.
async fn read_sale<'a>(
    on: impl Into<On<'a>>,
    ticket: &TicketId,
) -> Result<Option<Standing>, ticketing_store::Error> {
    let row = query(&format!(
        "{SALE} FROM tickets t LEFT JOIN queues q ON q.ticket_id = t.id WHERE t.id = $1"
    ))
    .bind(ticket)
    .fetch_optional(on)
    .await?;
    row.as_ref().map(sale_of).transpose()
}

fn sale_of(row: &Row) -> Result<Standing, ticketing_store::Error> {
    let queue = match row.get::<Option<i64>>("ranked")? {
        None => None,
        Some(ranked) => Some(QueueRow {
            ranked: ranked != 0,
            admitted_through: row.get("admitted_through")?,
            waiting: row.get("waiting")?,
        }),
    };
    Ok(Standing {
        on_sale_at: row
            .get::<Option<i64>>("on_sale_at")?
            .map(Timestamp::from_millis),
        free: row.get("free")?,
        queue,
        entry: None,
    })
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

/// Where `user` stands in `ticket`'s queue; `None` when not in it (or no queue). One
/// read: every waiting buyer asks again and again.
pub async fn place_of(
    store: &Store,
    queued: &Queued,
    ticket: &TicketId,
    user: &UserId,
    now: Timestamp,
    rate: Rate,
) -> Result<Option<Place>, ticketing_store::Error> {
    let standing = queued.standing(store, ticket, user, rate).await?;
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
