//! What this process has seen of on-sale queues, so that a waiting buyer's poll is
//! answered without a read of the database (a drop's crowd polls thousands of times a
//! second, and on PostgreSQL each read is a turn of the machine's busiest process).
//!
//! Two things are kept per listing: the listing as last read (its sale, free units, the
//! queue's cursor), read again once older than [`FRESH`] (one read at a time, the polls
//! arriving meanwhile wait for it); and the ranks of the accounts waiting far from the
//! head. With each read of a ranked queue come the ranks taken since the last (at most
//! [`LOAD`] a read, by the rank index), so every process knows every waiter a moment
//! after it ranks, not only those that asked it before. A rank stays fixed while its
//! account waits (a new one comes only after an admission, used or run out), and an
//! account more than [`MARGIN_SECONDS`] of admissions behind the cursor cannot have
//! been admitted since the listing was read (the pacer admits at most a second's worth
//! at once, then at its rate). So its place follows from the two: waiting at rank −
//! cursor, or sold out. Everyone nearer the head, or not known here, is read from the
//! database as before: an admission is never missed, and its order never told to wait
//! by a stale cursor.
//!
//! The cost: a far position may lag the database by what the cursor moved in
//! [`FRESH`] (a tenth of a second's admissions), and two processes' answers may differ
//! by as much.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ticketing_contracts::{TicketId, UserId};
use ticketing_store::{query, Store};

use super::late::Ranked;
use super::{read_sale, Entry, Rate, Standing};

/// How old a listing's read may be for a far account's place.
const FRESH: Duration = Duration::from_millis(100);
/// Accounts at most this many seconds of admissions behind the cursor are read from the
/// database every time.
const MARGIN_SECONDS: i64 = 2;
/// More listings than a process would see queue at once: beyond, it starts over.
const LISTINGS: usize = 10_000;
/// More accounts than one queue holds: beyond, the listing's ranks start over.
const RANKS: usize = 1_000_000;
/// Most ranks taken in with one read of the listing.
const LOAD: i64 = 50_000;

/// Listings this process has seen hold a buyer back, with what it saw of them. Also a
/// hint for orders: only orders for these pay for the read-only [`super::precheck`]
/// (every other order goes straight to its transaction); a listing missing here is
/// decided by [`super::gate`] as before.
#[derive(Clone, Default)]
pub struct Queued(Arc<Mutex<HashMap<TicketId, Arc<Seen>>>>);

#[derive(Default)]
struct Seen {
    /// The listing without any account's entry, and when its read began.
    sale: Mutex<Option<(Instant, Standing)>>,
    reading: tokio::sync::Mutex<()>,
    ranks: Mutex<Ranks>,
}

/// The far waiters' ranks, and through which rank they were taken in.
#[derive(Default)]
struct Ranks {
    of: HashMap<UserId, i64>,
    loaded_through: i64,
}

impl Queued {
    pub fn note(&self, ticket: &TicketId) {
        self.seen_or_note(ticket);
    }

    pub fn may_hold(&self, ticket: &TicketId) -> bool {
        lock(&self.0).contains_key(ticket)
    }

    fn seen(&self, ticket: &TicketId) -> Option<Arc<Seen>> {
        lock(&self.0).get(ticket).cloned()
    }

    fn seen_or_note(&self, ticket: &TicketId) -> Arc<Seen> {
        let mut listings = lock(&self.0);
        if !listings.contains_key(ticket) && listings.len() >= LISTINGS {
            listings.clear();
        }
        listings.entry(ticket.clone()).or_default().clone()
    }

    /// Where `user` stands in `ticket`'s queue, from what was seen when that tells, else
    /// one read (which is then kept). `None`: no such listing.
    pub(super) async fn standing(
        &self,
        store: &Store,
        ticket: &TicketId,
        user: &UserId,
        rate: Rate,
    ) -> Result<Option<Standing>, ticketing_store::Error> {
        if let Some(seen) = self.seen(ticket) {
            if let Some(sale) = seen.sale(store, ticket, rate).await? {
                if let Some(rank) = seen.rank_of(user) {
                    if far(&sale, rank, rate) {
                        return Ok(Some(Standing {
                            entry: Some(Entry::waiting(rank)),
                            ..sale
                        }));
                    }
                    seen.forget(user);
                }
            }
        }
        let read_at = Instant::now();
        let standing = super::read_standing(store.reader(), ticket, user).await?;
        if let Some(standing) = standing.as_ref().filter(|s| s.queue.is_some()) {
            let seen = self.seen_or_note(ticket);
            seen.saw(read_at, standing);
            if let Some(rank) = standing.entry.and_then(|e| e.waiting_rank()) {
                if far(standing, rank, rate) {
                    seen.remember(user, rank);
                }
            }
        }
        Ok(standing)
    }

    /// The listing and its queue as read at most [`FRESH`] ago (read again if need be).
    pub(super) async fn sale(
        &self,
        store: &Store,
        ticket: &TicketId,
        rate: Rate,
    ) -> Result<Option<Standing>, ticketing_store::Error> {
        self.seen_or_note(ticket).sale(store, ticket, rate).await
    }

    /// `user` took a rank in a join this process made.
    pub(super) fn took(&self, ticket: &TicketId, user: &UserId, ranked: Ranked, rate: Rate) {
        if ranked.rank - ranked.admitted_through > margin(rate) {
            self.seen_or_note(ticket).remember(user, ranked.rank);
        }
    }
}

impl Seen {
    /// The listing read at most [`FRESH`] ago, read again if need be (with the ranks
    /// taken since).
    async fn sale(
        &self,
        store: &Store,
        ticket: &TicketId,
        rate: Rate,
    ) -> Result<Option<Standing>, ticketing_store::Error> {
        if let Some(sale) = self.fresh() {
            return Ok(Some(sale));
        }
        let _reading = self.reading.lock().await;
        if let Some(sale) = self.fresh() {
            return Ok(Some(sale));
        }
        let read_at = Instant::now();
        let sale = read_sale(store.reader(), ticket).await?;
        if let Some(sale) = &sale {
            if let Some(queue) = sale.queue.filter(|q| q.ranked) {
                self.load_ranks(store, ticket, queue.admitted_through + margin(rate))
                    .await?;
            }
            self.saw(read_at, sale);
        }
        Ok(sale)
    }

    /// Take in the ranks after those taken in before, beyond `near` (the ranks up to it
    /// are read every time anyway).
    async fn load_ranks(
        &self,
        store: &Store,
        ticket: &TicketId,
        near: i64,
    ) -> Result<(), ticketing_store::Error> {
        let after = lock(&self.ranks).loaded_through.max(near);
        let rows = query(
            "SELECT user_id, rank FROM queue_entries \
             WHERE ticket_id = $1 AND rank > $2 ORDER BY rank LIMIT $3",
        )
        .bind(ticket)
        .bind(after)
        .bind(LOAD)
        .fetch_all(store.reader())
        .await?;
        let mut ranks = lock(&self.ranks);
        ranks.loaded_through = ranks.loaded_through.max(after);
        for row in rows {
            let rank: i64 = row.get("rank")?;
            ranks.remember(row.get("user_id")?, rank);
            ranks.loaded_through = ranks.loaded_through.max(rank);
        }
        Ok(())
    }

    fn fresh(&self) -> Option<Standing> {
        let sale = lock(&self.sale);
        sale.as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, sale)| sale.clone())
    }

    /// Keep what a read begun at `read_at` saw of the listing, unless a later one is kept.
    fn saw(&self, read_at: Instant, standing: &Standing) {
        let mut sale = lock(&self.sale);
        if sale.as_ref().is_none_or(|(at, _)| *at < read_at) {
            *sale = Some((
                read_at,
                Standing {
                    entry: None,
                    ..standing.clone()
                },
            ));
        }
    }

    fn rank_of(&self, user: &UserId) -> Option<i64> {
        lock(&self.ranks).of.get(user).copied()
    }

    fn remember(&self, user: &UserId, rank: i64) {
        lock(&self.ranks).remember(user.clone(), rank);
    }

    fn forget(&self, user: &UserId) {
        lock(&self.ranks).of.remove(user);
    }
}

impl Ranks {
    fn remember(&mut self, user: UserId, rank: i64) {
        if self.of.len() >= RANKS {
            self.of.clear();
        }
        self.of.insert(user, rank);
    }
}

fn margin(rate: Rate) -> i64 {
    MARGIN_SECONDS * rate.per_second()
}

/// Whether `rank` is far enough behind the ranked queue's cursor in `sale`.
fn far(sale: &Standing, rank: i64, rate: Rate) -> bool {
    sale.queue
        .is_some_and(|q| q.ranked && rank - q.admitted_through > margin(rate))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use ticketing_contracts::{TicketId, UserId};
    use ticketing_kit::testing::{TestBackend, TestEnv};
    use ticketing_store::{query, Store};

    use super::{Queued, FRESH};
    use crate::queue::Rate;

    async fn run(store: &Store, sql: &str) {
        query(sql).execute(store.writer()).await.unwrap();
    }

    /// A far account's place comes from what the process saw (a change made in the
    /// database behind its back does not show), asked before or not; near the head,
    /// every look is a read.
    #[tokio::test]
    async fn only_far_places_are_answered_from_what_was_seen() {
        let env = TestEnv::new(TestBackend::Sqlite);
        let location = env.runtime.location("orders").unwrap();
        let store = Store::open(&location, &crate::MIGRATIONS).await.unwrap();
        run(
            &store,
            "INSERT INTO tickets (id, title, price_cents, version, quantity, on_sale_at) \
             VALUES ('t', 'T', 100, 0, 500, 1)",
        )
        .await;
        run(
            &store,
            "INSERT INTO queues (ticket_id, ranked, next_rank) VALUES ('t', 1, 1001)",
        )
        .await;
        run(
            &store,
            "INSERT INTO queue_entries (ticket_id, user_id, joined_at, rank) \
             VALUES ('t', 'near', 0, 1), ('t', 'far', 0, 1000)",
        )
        .await;
        let (queued, rate, ticket) = (Queued::default(), Rate(100), TicketId::from("t"));
        let rank = async |user: &str| {
            let standing = queued
                .standing(&store, &ticket, &UserId::from(user), rate)
                .await
                .unwrap()
                .unwrap();
            standing.entry.and_then(|e| e.rank)
        };
        assert_eq!(rank("far").await, Some(1000));
        assert_eq!(rank("near").await, Some(1));

        // A rank taken meanwhile comes with the listing's next read.
        run(
            &store,
            "INSERT INTO queue_entries (ticket_id, user_id, joined_at, rank) \
             VALUES ('t', 'later', 0, 1001)",
        )
        .await;
        tokio::time::sleep(FRESH * 2).await;
        assert_eq!(rank("near").await, Some(1));

        run(&store, "DELETE FROM queue_entries").await;
        assert_eq!(rank("far").await, Some(1000), "far: what was seen");
        assert_eq!(rank("later").await, Some(1001), "never asked: taken in");
        assert_eq!(rank("near").await, None, "near the head: read");

        // The cursor moved within two seconds' admissions of the far account.
        run(&store, "UPDATE queues SET admitted_through = 850").await;
        tokio::time::sleep(FRESH * 2).await;
        assert_eq!(rank("far").await, None, "near the head now: read");
        store.close().await;
    }
}
