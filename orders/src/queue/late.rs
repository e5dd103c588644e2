//! PostgreSQL: the late joins of one listing take their ranks together.
//!
//! Every late join takes the next rank from the queue's row, so every one waits for the
//! row's lock. Waiting for it in PostgreSQL cost the drop dearly: many of a process's
//! 20 connections parked on that lock (not serving the polls behind them), and each
//! commit woke the waiters to contend again (lock-manager work, context switches). So a
//! process sends one late-join statement per listing at a time (a `batch-aint-one`
//! batcher keyed by the listing, policy `Immediate`); the joins that arrive meanwhile
//! wait here, in arrival order, and go together in the next statement, which takes a
//! run of ranks in one update of the row. Across processes at most one statement each
//! waits on the row.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use batch_aint_one::{Batcher, BatchingPolicy, Limits, Processor};
use ticketing_contracts::{TicketId, Timestamp, UserId};
use ticketing_store::{query, Backend, Store};

use super::join::{in_line, REJOIN};
use super::{place_from, Entry, Place, Rate};

/// Most joins in one statement.
const MAX_BATCH: usize = 256;
/// Joins of one listing waiting for a statement, beyond which they go alone.
const MAX_QUEUED: usize = 4096;

/// A late join's rank as its statement took it, with what its place is computed from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ranked {
    pub rank: i64,
    pub admitted_through: i64,
    pub free: i64,
}

/// See the module documentation. Cheap to clone; on SQLite (one writer, no lock to
/// wait in) joins are not batched.
#[derive(Clone)]
pub struct LateJoins {
    batcher: Option<Arc<Batcher<RankJoins>>>,
}

impl LateJoins {
    /// Starts the batcher's worker: call from within the runtime.
    pub fn new(store: &Store) -> LateJoins {
        if store.backend() != Backend::Postgres {
            return LateJoins { batcher: None };
        }
        let batcher = Batcher::builder()
            .name("orders.late_joins")
            .processor(RankJoins(store.clone()))
            .limits(
                Limits::builder()
                    .max_batch_size(MAX_BATCH)
                    .max_key_concurrency(1)
                    .max_key_queued_items(MAX_QUEUED)
                    .build(),
            )
            .batching_policy(BatchingPolicy::Immediate)
            .build();
        LateJoins {
            batcher: Some(Arc::new(batcher)),
        }
    }

    /// Take the next rank of `ticket`'s queue for `user` (PostgreSQL, once the draws are
    /// ranked); `None` when it took none: the draws are not ranked yet or the account is
    /// in line (the caller reads its place).
    ///
    /// Two joins of one account in two processes at once both see it out of line (each
    /// statement's snapshot), and the second takes a rank after the first: the account
    /// keeps one place, the later, and the line a gap that the pacer's cursor passes
    /// (nobody is admitted for it).
    pub(super) async fn join(
        &self,
        store: &Store,
        ticket: &TicketId,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Option<Ranked>, ticketing_store::Error> {
        if let Some(batcher) = &self.batcher {
            match batcher.add(ticket.clone(), (user.clone(), now)).await {
                Ok(ranked) => return Ok(ranked),
                // Alone below (a full line, a failed batch: decided again on its own).
                Err(e) => tracing::debug!(error = %e, "batched late join not done"),
            }
        }
        let mut ranked = rank(store, ticket, &[(user.clone(), now)]).await?;
        Ok(ranked.remove(user))
    }
}

impl Ranked {
    /// The joiner's place, for a listing on sale at `on_sale_at`.
    pub(super) fn place(self, on_sale_at: Timestamp, now: Timestamp, rate: Rate) -> Place {
        let entry = Entry {
            rank: Some(self.rank),
            admitted_until: None,
            used_at: None,
        };
        place_from(
            entry,
            self.admitted_through,
            self.free,
            on_sale_at,
            now,
            rate,
        )
    }
}

#[derive(Clone)]
struct RankJoins(Store);

impl Processor for RankJoins {
    type Key = TicketId;
    type Input = (UserId, Timestamp);
    type Output = Option<Ranked>;
    type Error = Arc<ticketing_store::Error>;
    type Resources = ();

    async fn acquire_resources(&self, _: TicketId) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn process(
        &self,
        ticket: TicketId,
        joins: impl Iterator<Item = (UserId, Timestamp)> + Send,
        _: (),
    ) -> Result<Vec<Option<Ranked>>, Self::Error> {
        let joins: Vec<_> = joins.collect();
        let ranked = rank(&self.0, &ticket, &joins).await.map_err(|e| {
            tracing::warn!(error = %e, "a batched late join failed; its joins go alone");
            Arc::new(e)
        })?;
        // An account twice in a batch: both requests get its one rank.
        Ok(joins
            .iter()
            .map(|(user, _)| ranked.get(user).copied())
            .collect())
    }
}

/// One statement, a transaction of its own: ranks for the accounts of `joins` not in
/// line, in the order given, taken by one update of the queue's row (locked for that
/// statement's run and its commit on the server only, never across a round trip), their
/// entries written, the places' figures returned.
async fn rank(
    store: &Store,
    ticket: &TicketId,
    joins: &[(UserId, Timestamp)],
) -> Result<HashMap<UserId, Ranked>, ticketing_store::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH asked AS MATERIALIZED ( \
               SELECT DISTINCT ON (j->>0) j->>0 AS user_id, (j->>1)::bigint AS at, n \
               FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS joins(j, n) \
               ORDER BY j->>0, n), \
             fresh AS MATERIALIZED ( \
               SELECT user_id, at, row_number() OVER (ORDER BY n) AS k FROM asked a \
               WHERE NOT {}), \
             taken AS (UPDATE queues SET next_rank = next_rank + (SELECT count(*) FROM fresh) \
               WHERE ticket_id = $1 AND ranked = 1 AND EXISTS (SELECT 1 FROM fresh) \
               RETURNING next_rank - (SELECT count(*) FROM fresh) AS first, admitted_through), \
             joined AS (INSERT INTO queue_entries (ticket_id, user_id, joined_at, rank) \
               SELECT $1, f.user_id, f.at, taken.first + f.k - 1 FROM fresh f, taken \
               {REJOIN} RETURNING user_id, rank) \
             SELECT joined.user_id, joined.rank, taken.admitted_through, \
               COALESCE(t.quantity, 1) - t.held AS free \
             FROM joined, taken, tickets t WHERE t.id = $1",
            in_line("a.user_id", "a.at")
        )
    });
    let json = serde_json::Value::from(
        joins
            .iter()
            .map(|(user, at)| serde_json::json!([user, at.as_millis()]))
            .collect::<Vec<_>>(),
    );
    let rows = query(&SQL)
        .bind(ticket)
        .bind(json.to_string())
        .fetch_all(store.writer())
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.get("user_id")?,
                Ranked {
                    rank: row.get("rank")?,
                    admitted_through: row.get("admitted_through")?,
                    free: row.get("free")?,
                },
            ))
        })
        .collect()
}
