//! PostgreSQL: late joins of an on-sale queue made at the same time share one statement.
//!
//! A late join takes the next rank of its listing's queue, so every one of them updates
//! the queue's one row, and each waited for the one before it to commit: in a drop, the
//! late crowd's joins (hundreds a second) queued on that row and, holding the process's
//! connections while they waited, held up every other request of the process too.
//! Concurrent late joins instead go to a batcher (as orders do: `placer`): one statement
//! for a batch locks each listing's queue row once, in listing order (two batches cannot
//! deadlock), takes as many ranks as the batch has joins for it, in their order of
//! arrival here, and writes the entries. An account already in line, a queue not yet
//! ranked, a failed batch: "not joined here", and the caller joins in a transaction.
//! SQLite has one writer and no round trips to save: there it never joins.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use batch_aint_one::Batcher;
use ticketing_contracts::{TicketId, Timestamp, UserId};
use ticketing_store::{query, Backend, Store};

use crate::placer::{batcher, failed, BatchResult, BatchStatement, Batched};
use crate::queue::{in_line, REJOIN};

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct LateJoins {
    batcher: Option<Arc<Batcher<Batched<JoinLate>>>>,
}

/// A late join: the account, the listing, when.
pub struct Join {
    ticket: TicketId,
    user: UserId,
    at: Timestamp,
}

impl LateJoins {
    /// Late joins of `store`'s queues (none on SQLite). Starts its worker: call from
    /// within the runtime.
    pub fn new(store: &Store) -> LateJoins {
        let batcher = (store.backend() == Backend::Postgres)
            .then(|| Arc::new(batcher("orders.late_joins", JoinLate(store.clone()))));
        LateJoins { batcher }
    }

    /// Join `ticket`'s ranked queue at its back, in a batch; whether it did.
    pub async fn join(&self, ticket: &TicketId, user: &UserId, at: Timestamp) -> bool {
        let Some(batcher) = &self.batcher else {
            return false;
        };
        let join = Join {
            ticket: ticket.clone(),
            user: user.clone(),
            at,
        };
        batcher
            .add((), join)
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "batched late join not done"))
            .unwrap_or(false)
    }
}

#[derive(Clone)]
pub(crate) struct JoinLate(Store);

impl BatchStatement for JoinLate {
    type Input = Join;
    type Output = bool;

    async fn run(&self, joins: Vec<Join>) -> BatchResult<bool> {
        // The queue rows, ranked ones only, locked in listing order; the joins not in
        // line, numbered per listing in arrival order; the ranks taken; the entries.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH batch AS MATERIALIZED ( \
                   SELECT r->>'ticketId' AS ticket_id, r->>'userId' AS user_id, \
                     (r->>'at')::bigint AS joined_at, n \
                   FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS rows(r, n)), \
                 locked AS MATERIALIZED ( \
                   SELECT q.ticket_id FROM queues q \
                   WHERE q.ticket_id IN (SELECT ticket_id FROM batch) AND q.ranked = 1 \
                   ORDER BY q.ticket_id FOR NO KEY UPDATE OF q), \
                 fresh AS MATERIALIZED ( \
                   SELECT b.ticket_id, b.user_id, b.joined_at, b.n, \
                     row_number() OVER (PARTITION BY b.ticket_id ORDER BY b.n) AS k \
                   FROM batch b WHERE b.ticket_id IN (SELECT ticket_id FROM locked) \
                   AND NOT {IN_LINE}), \
                 taken AS ( \
                   UPDATE queues q SET next_rank = q.next_rank + f.c \
                   FROM (SELECT ticket_id, count(*) AS c FROM fresh GROUP BY ticket_id) f \
                   WHERE q.ticket_id = f.ticket_id \
                   RETURNING q.ticket_id, q.next_rank - f.c AS first) \
                 INSERT INTO queue_entries (ticket_id, user_id, joined_at, rank) \
                 SELECT f.ticket_id, f.user_id, f.joined_at, t.first + f.k - 1 \
                 FROM fresh f JOIN taken t ON t.ticket_id = f.ticket_id ORDER BY f.n \
                 {REJOIN} RETURNING ticket_id, user_id",
                IN_LINE = in_line("b.ticket_id", "b.user_id", "b.joined_at"),
            )
        });
        // An account's second join of a listing in one batch is made in a transaction
        // (one statement cannot write the same entry twice).
        let mut seen = HashSet::new();
        let rows: Vec<serde_json::Value> = joins
            .iter()
            .filter(|j| seen.insert((&j.ticket, &j.user)))
            .map(|j| {
                serde_json::json!({
                    "ticketId": j.ticket, "userId": j.user, "at": j.at.as_millis(),
                })
            })
            .collect();
        let written = query(&SQL)
            .bind(serde_json::Value::Array(rows).to_string())
            .fetch_all(self.0.writer())
            .await
            .map_err(|e| failed("a batched late join", e))?;
        let mut joined = HashSet::new();
        for row in written {
            let ticket: String = row.get("ticket_id").map_err(|e| failed("a late join", e))?;
            let user: String = row.get("user_id").map_err(|e| failed("a late join", e))?;
            joined.insert((ticket, user));
        }
        // The first of an account's joins in the batch took the rank: the others are
        // told "not here" and find the account in line.
        let mut answered = HashSet::new();
        Ok(joins
            .iter()
            .map(|j| {
                let key = (j.ticket.to_string(), j.user.to_string());
                joined.contains(&key) && answered.insert(key)
            })
            .collect())
    }
}
