//! PostgreSQL: orders placed at the same time share their statements.
//!
//! Placing an order in the common case — one unit of a ticket listed as one, known and
//! free — is two statements: read the ticket from the replica, then claim it, insert the
//! order and its `order:created` in one statement. Each costs PostgreSQL a round trip, a wake-up and a statement whatever
//! it holds, and under load those per-statement costs were most of an order's CPU. So
//! concurrent placements queue for a batcher (`batch-aint-one`, policy `Immediate`): a
//! placement that finds a free slot runs at once, alone; the ones that arrive while the
//! slots are busy wait for the next one and go together, one statement for all their
//! reads, one for all their inserts. Each caller builds its own event between the two,
//! so the event carries its own request's trace.
//!
//! The insert keeps every guarantee of the transaction (`claim`): an order is written
//! only when its ticket is still at the version read (so its price is the one read) and
//! free, and its claim and its event are written by the same statement, so with it or
//! not at all. Tickets are locked in id order, so two batches that contend for the same
//! tickets wait for each other in one order and cannot deadlock.
//!
//! Orders on listings of several units are claimed in batches of their own
//! ([`Placer::claim`], decisions 0026 and 0038), in one transaction a batch: with a
//! queue, the buyers' admissions are spent; with an `Idempotency-Key`, the requests'
//! answers are stored; then the listings' rows are locked and one statement counts the
//! units and writes — the transaction's own order (admission, key, row), so a batch and a
//! transaction never wait for each other in a cycle.
//!
//! Anything else — the ticket unknown, held, changed, too few units free, no admission,
//! the batch refused or failed — answers "not placed here", and the caller decides in a
//! transaction (`orders::place`). SQLite has no round trips to save (and its writer
//! already commits queued transactions together): there the placer always answers "not
//! placed here".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, LazyLock};

use batch_aint_one::{Batcher, BatchingPolicy, Limits, Processor};
use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::{TicketId, Timestamp};
use ticketing_kit::idempotency;
use ticketing_store::{query, Backend, Store};

use crate::domain::Order;
use crate::tickets::{TicketCopy, FIND_COLUMNS};

/// Most placements in one statement.
const MAX_BATCH: usize = 64;
/// Batches of one kind in flight at once (a statement each, so a connection each).
const IN_FLIGHT: usize = 2;
/// Placements waiting for a batch, beyond which they are decided alone.
const MAX_QUEUED: usize = 1024;

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Placer {
    batchers: Option<Arc<Batchers>>,
}

struct Batchers {
    reads: Batcher<Batched<ReadTickets>>,
    inserts: Batcher<Batched<InsertOrders>>,
    claims: Batcher<Batched<ClaimUnits>>,
}

/// An order about to be inserted (its ticket at the version read) and its event.
pub struct Placement {
    pub order: Order,
    pub event: Envelope,
    /// Its listing has an on-sale queue: the buyer's admission is spent at this time
    /// with the order, or the order is not placed here ([`Placer::claim`] only).
    pub admitted_at: Option<Timestamp>,
    /// The request's idempotency key and answer (`Keyed::json_row`), stored with the
    /// order, or the order is not placed here ([`Placer::claim`] only).
    pub answer: Option<serde_json::Value>,
}

impl Placement {
    pub fn new(order: Order, event: Envelope) -> Placement {
        Placement {
            order,
            event,
            admitted_at: None,
            answer: None,
        }
    }
}

impl Placer {
    /// A placer for `store`'s orders (one that never places on SQLite). Starts its
    /// workers: call from within the runtime.
    pub fn new(store: &Store) -> Placer {
        if store.backend() != Backend::Postgres {
            return Placer { batchers: None };
        }
        Placer {
            batchers: Some(Arc::new(Batchers {
                reads: batcher("orders.read_tickets", ReadTickets(store.clone())),
                inserts: batcher("orders.insert_orders", InsertOrders(store.clone())),
                claims: batcher("orders.claim_units", ClaimUnits(store.clone())),
            })),
        }
    }

    /// The ticket as last applied to the replica; `None` when unknown here or when it
    /// could not be read in a batch (the caller reads it in its transaction).
    pub async fn ticket(&self, id: &TicketId) -> Option<TicketCopy> {
        let batchers = self.batchers.as_ref()?;
        batchers
            .reads
            .add((), id.clone())
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "batched ticket read not done"))
            .ok()
            .flatten()
    }

    /// Insert the order of `placement` and enqueue its event, if its ticket is free and
    /// still at the version read; whether it did.
    pub async fn insert(&self, placement: Placement) -> bool {
        let Some(batchers) = self.batchers.as_ref() else {
            return false;
        };
        batchers
            .inserts
            .add((), placement)
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "batched order insert not done"))
            .unwrap_or(false)
    }

    /// Place the order of `placement` on a listing of several units: claimed, counted
    /// for its account, inserted with its event (its admission spent, its request's
    /// answer stored), if its listing is still at the version read, has the units free,
    /// the account room for them, and the buyer an unused admission (a queued listing);
    /// whether it did.
    pub async fn claim(&self, placement: Placement) -> bool {
        let Some(batchers) = self.batchers.as_ref() else {
            return false;
        };
        batchers
            .claims
            .add((), placement)
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "batched claim not done"))
            .unwrap_or(false)
    }
}

/// A batcher of `statement`: one at once when a slot is free, the ones that queued
/// meanwhile together.
fn batcher<S: BatchStatement>(name: &str, statement: S) -> Batcher<Batched<S>> {
    Batcher::builder()
        .name(name)
        .processor(Batched(statement))
        .limits(
            Limits::builder()
                .max_batch_size(MAX_BATCH)
                .max_key_concurrency(IN_FLIGHT)
                .max_key_queued_items(MAX_QUEUED)
                .build(),
        )
        .batching_policy(BatchingPolicy::Immediate)
        .build()
}

type BatchResult<T> = Result<Vec<T>, Arc<ticketing_store::Error>>;

fn failed(what: &str, error: ticketing_store::Error) -> Arc<ticketing_store::Error> {
    tracing::warn!(error = %error, "{what} failed; its placements are decided one by one");
    Arc::new(error)
}

/// One statement for a whole batch: an output per input, in the inputs' order.
trait BatchStatement: Clone + Send + Sync + 'static {
    type Input: Send;
    type Output: Send;

    fn run(
        &self,
        inputs: Vec<Self::Input>,
    ) -> impl Future<Output = BatchResult<Self::Output>> + Send;
}

/// A [`BatchStatement`] as the batcher's processor: one key, nothing to acquire (the
/// statement takes its connection from the pool).
#[derive(Clone)]
struct Batched<S>(S);

impl<S: BatchStatement> Processor for Batched<S> {
    type Key = ();
    type Input = S::Input;
    type Output = S::Output;
    type Error = Arc<ticketing_store::Error>;
    type Resources = ();

    async fn acquire_resources(&self, _: ()) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn process(
        &self,
        _: (),
        inputs: impl Iterator<Item = S::Input> + Send,
        _: (),
    ) -> BatchResult<S::Output> {
        self.0.run(inputs.collect()).await
    }
}

#[derive(Clone)]
struct ReadTickets(Store);

impl BatchStatement for ReadTickets {
    type Input = TicketId;
    type Output = Option<TicketCopy>;

    async fn run(&self, ids: Vec<TicketId>) -> BatchResult<Option<TicketCopy>> {
        // `= ANY(ARRAY(...))`: an index lookup per id whatever the statistics say (a
        // join with the array could be planned as a scan of the replica).
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {FIND_COLUMNS} FROM tickets \
                 WHERE id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))"
            )
        });
        let json = serde_json::to_string(&ids).expect("ids serialize");
        let found: Vec<TicketCopy> = query(&SQL)
            .bind(json)
            .fetch_all_as(self.0.reader())
            .await
            .map_err(|e| failed("a batched ticket read", e))?;
        let found: HashMap<TicketId, TicketCopy> =
            found.into_iter().map(|t| (t.id.clone(), t)).collect();
        // A ticket asked for twice in a batch: both callers get it.
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }
}

#[derive(Clone)]
struct InsertOrders(Store);

impl BatchStatement for InsertOrders {
    type Input = Placement;
    type Output = bool;

    async fn run(&self, placements: Vec<Placement>) -> BatchResult<bool> {
        // The listings are locked first, in id order, and only while free, listed as one
        // unit and at the version read: two batches that contend for the same listings
        // wait for each other in one order and cannot deadlock, and a listing a
        // concurrent claim changed is re-checked as committed. Only the locked ones are
        // claimed, their orders inserted, their events enqueued (a ticket listed as one
        // unit counts no account shares: `claim::Taken`).
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH batch AS MATERIALIZED ( \
                   SELECT r, n FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS rows(r, n)), \
                 locked AS MATERIALIZED ( \
                   SELECT t.id FROM tickets t JOIN batch ON t.id = batch.r->>'ticketId' \
                   WHERE t.version = (batch.r->>'ticketVersion')::bigint AND t.held = 0 \
                     AND t.quantity IS NULL \
                   ORDER BY t.id FOR NO KEY UPDATE OF t), \
                 claimed AS ( \
                   UPDATE tickets SET held = held + 1 WHERE id IN (SELECT id FROM locked) \
                   RETURNING id), \
                 written AS ( \
                   INSERT INTO orders (id, user_id, ticket_id, status, expires_at, \
                                       reserved_until, version, quantity) \
                   SELECT r->>'id', r->>'userId', r->>'ticketId', r->>'status', \
                          (r->>'expiresAt')::bigint, (r->>'reservedUntil')::bigint, 0, 1 \
                   FROM batch WHERE r->>'ticketId' IN (SELECT id FROM claimed) \
                   RETURNING id) \
                 {} FROM batch WHERE r->>'id' IN (SELECT id FROM written) ORDER BY n \
                 RETURNING event_id",
                outbox::insert_from_json("(r->'event')")
            )
        });
        // A listing claimed once per statement: a second placement of the same listing
        // in the batch is decided in a transaction.
        let mut listings = HashSet::new();
        let rows: Vec<serde_json::Value> = placements
            .iter()
            .filter(|p| p.admitted_at.is_none() && p.answer.is_none())
            .filter(|p| p.order.quantity == 1 && listings.insert(&p.order.ticket.id))
            .filter_map(|p| {
                let order = &p.order;
                Some(serde_json::json!({
                    "id": order.id,
                    "userId": order.user_id,
                    "ticketId": order.ticket.id,
                    "ticketVersion": order.ticket.version,
                    "status": order.status.as_str(),
                    "expiresAt": order.deadline.expires_at.as_millis(),
                    "reservedUntil": order.deadline.reserved_until.as_millis(),
                    "event": outbox::json_row(&p.event)?,
                }))
            })
            .collect();
        let written: HashSet<String> =
            outbox::enqueue_in_statement(&self.0, &SQL, serde_json::Value::from(rows).to_string())
                .await
                .map_err(|e| failed("a batched order insert", e))?
                .into_iter()
                .collect();
        Ok(placements
            .iter()
            .map(|p| written.contains(&p.event.id))
            .collect())
    }
}

/// Orders on listings of several units, claimed together: many buyers of one listing
/// (a drop) take its row's lock once per batch instead of once each, and hold one pool
/// connection between them instead of one each (a claim in a transaction of its own
/// holds its connection while it waits for its turn at the row).
#[derive(Clone)]
struct ClaimUnits(Store);

/// A listing as locked for a batch of claims.
struct Locked {
    version: i64,
    free: i64,
    per_account: i64,
}

impl ClaimUnits {
    /// Lock the batch's listings in id order (a batch and a transaction of
    /// `orders::place` wait for each other in one order) and read their counters as
    /// committed: every write of a listing's account shares holds its row first, so
    /// from here on the shares read are current too.
    async fn lock(
        tx: &mut ticketing_store::Tx,
        ids: &BTreeSet<&TicketId>,
    ) -> Result<HashMap<TicketId, Locked>, ticketing_store::Error> {
        let json = serde_json::to_string(ids).expect("ids serialize");
        let rows = query(
            "SELECT id, version, quantity - held AS free, \
                    COALESCE(max_per_account, 1) AS per_account FROM tickets \
             WHERE id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) \
               AND quantity IS NOT NULL \
             ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(json)
        .fetch_all(&mut *tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.get("id")?,
                    Locked {
                        version: row.get("version")?,
                        free: row.get("free")?,
                        per_account: row.get("per_account")?,
                    },
                ))
            })
            .collect()
    }

    /// Spend the admissions of the placements on queued listings, before anything else
    /// (as a transaction of `orders::place` does: the admission, then its key, then the
    /// listing's row; a batch that took them the other way round could wait for a
    /// transaction's admission while that transaction waited for the row). The entries
    /// are locked in (listing, account) order: two batches wait for each other in one
    /// order. The (listing, account) pairs spent.
    async fn spend_admissions(
        tx: &mut ticketing_store::Tx,
        placements: &[Placement],
    ) -> Result<HashSet<(String, String)>, ticketing_store::Error> {
        // Each table by its index whatever the statistics say (`= ANY (ARRAY(...))`).
        const SQL: &str = "WITH asked AS MATERIALIZED ( \
               SELECT a->>0 AS ticket_id, a->>1 AS user_id, (a->>2)::bigint AS at \
               FROM jsonb_array_elements($1::jsonb) a), \
             locked AS MATERIALIZED ( \
               SELECT q.ticket_id, q.user_id, asked.at FROM queue_entries q \
               JOIN asked ON asked.ticket_id = q.ticket_id AND asked.user_id = q.user_id \
               WHERE q.ticket_id = ANY (ARRAY(SELECT ticket_id FROM asked)) \
                 AND q.user_id = ANY (ARRAY(SELECT user_id FROM asked)) \
                 AND q.admitted_until > asked.at AND q.used_at IS NULL \
               ORDER BY q.ticket_id, q.user_id FOR NO KEY UPDATE OF q) \
             UPDATE queue_entries q SET used_at = locked.at FROM locked \
             WHERE q.ticket_id = locked.ticket_id AND q.user_id = locked.user_id \
             RETURNING q.ticket_id, q.user_id";
        let asked: Vec<serde_json::Value> = placements
            .iter()
            .filter_map(|p| {
                let at = p.admitted_at?;
                Some(serde_json::json!([
                    p.order.ticket.id,
                    p.order.user_id,
                    at.as_millis()
                ]))
            })
            .collect();
        if asked.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = query(SQL)
            .bind(serde_json::Value::from(asked).to_string())
            .fetch_all(&mut *tx)
            .await?;
        rows.iter()
            .map(|row| Ok((row.get("ticket_id")?, row.get("user_id")?)))
            .collect()
    }

    /// Store the keyed placements' answers, after their admissions and before the
    /// listings are locked (the order of `orders::place`: see [`Self::spend_admissions`]);
    /// the keys written. A key answered within its 24 hours (a repeat of the request
    /// committed first) is not: its placement is decided in a transaction, where that
    /// answer is found.
    async fn record_answers(
        tx: &mut ticketing_store::Tx,
        answers: &[&serde_json::Value],
    ) -> Result<HashSet<(String, String)>, ticketing_store::Error> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            // In key order: two batches with copies of the same requests wait for each
            // other in one order.
            idempotency::record_from_json(
                "r",
                "FROM jsonb_array_elements($1::jsonb) AS rows(r) ORDER BY 1, 2",
            ) + " RETURNING scope, key"
        });
        if answers.is_empty() {
            return Ok(HashSet::new());
        }
        let json = serde_json::to_string(answers).expect("answers serialize");
        let rows = query(&SQL).bind(json).fetch_all(&mut *tx).await?;
        rows.iter()
            .map(|row| Ok((row.get("scope")?, row.get("key")?)))
            .collect()
    }

    async fn place(
        &self,
        placements: &[Placement],
    ) -> Result<HashSet<String>, ticketing_store::Error> {
        // The account share check and the writes, in one statement: an order whose
        // account would exceed the listing's cap is left out; the listing's counter
        // grows by the units of the orders written; and what was done for orders left
        // out, here or before (the admissions spent, $2; the answers stored, $3), is
        // undone. What is left out is decided again in a transaction, which refuses it
        // or places it. Each table by its index whatever the statistics say (a lookup per
        // row, `= ANY (ARRAY(...))`): joined to the batch, the shares and the keys were
        // read whole, 430 times in 15 s of a drop.
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH batch AS MATERIALIZED ( \
                   SELECT r, n FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS rows(r, n)), \
                 ok AS MATERIALIZED ( \
                   SELECT b.r, b.n FROM batch b \
                   WHERE COALESCE((SELECT a.units FROM account_units a \
                                   WHERE a.ticket_id = b.r->>'ticketId' \
                                     AND a.user_id = b.r->>'userId'), 0) \
                         + (b.r->>'quantity')::bigint <= (b.r->>'perAccount')::bigint), \
                 {}, {}, \
                 counted AS ( \
                   INSERT INTO account_units (ticket_id, user_id, units) \
                   SELECT r->>'ticketId', r->>'userId', (r->>'quantity')::bigint FROM ok \
                   ON CONFLICT (ticket_id, user_id) DO UPDATE \
                   SET units = account_units.units + excluded.units), \
                 claimed AS ( \
                   UPDATE tickets t SET held = t.held + s.units \
                   FROM (SELECT r->>'ticketId' AS id, SUM((r->>'quantity')::bigint) AS units \
                         FROM ok GROUP BY 1) s \
                   WHERE t.id = s.id), \
                 written AS ( \
                   INSERT INTO orders (id, user_id, ticket_id, status, expires_at, \
                                       reserved_until, version, quantity) \
                   SELECT r->>'id', r->>'userId', r->>'ticketId', r->>'status', \
                          (r->>'expiresAt')::bigint, (r->>'reservedUntil')::bigint, 0, \
                          (r->>'quantity')::bigint \
                   FROM ok RETURNING id) \
                 {} FROM ok WHERE r->>'id' IN (SELECT id FROM written) ORDER BY n \
                 RETURNING event_id",
                undo_left_out(
                    "unused",
                    "$2",
                    [("ticket_id", "ticketId"), ("user_id", "userId")],
                    "UPDATE queue_entries SET used_at = NULL"
                ),
                undo_left_out(
                    "unanswered",
                    "$3",
                    [("scope", "scope"), ("key", "key")],
                    "DELETE FROM idempotency_keys"
                ),
                outbox::insert_from_json("(r->'event')")
            )
        });
        let mut tx = self.0.begin().await?;
        let admitted = Self::spend_admissions(&mut tx, placements).await?;
        let pair = |p: &Placement| (p.order.ticket.id.to_string(), p.order.user_id.to_string());
        let eligible: Vec<&Placement> = placements
            .iter()
            .filter(|p| p.admitted_at.is_none() || admitted.contains(&pair(p)))
            .collect();
        // Nobody admitted (a queue drained: orders pass its gate without admissions,
        // which only a transaction decides): no answer stored, no listing locked.
        if eligible.is_empty() {
            tx.rollback().await?;
            return Ok(HashSet::new());
        }
        // A key once per batch (a second copy of a request is decided in a transaction).
        let mut keys = HashSet::new();
        let answers: Vec<&serde_json::Value> = eligible
            .iter()
            .filter_map(|p| p.answer.as_ref())
            .filter(|a| keys.insert((a["scope"].as_str(), a["key"].as_str())))
            .collect();
        let ids: BTreeSet<&TicketId> = eligible.iter().map(|p| &p.order.ticket.id).collect();
        let answered = Self::record_answers(&mut tx, &answers).await?;
        let mut listings = Self::lock(&mut tx, &ids).await?;
        // In arrival order, while the units last; an account once per listing and
        // batch (its share is one row, counted once per statement).
        let mut accounts = HashSet::new();
        let rows: Vec<serde_json::Value> = eligible
            .iter()
            .filter_map(|p| {
                let order = &p.order;
                let listing = listings.get_mut(&order.ticket.id)?;
                let key = p.answer.as_ref().map(|a| {
                    let part = |name: &str| a[name].as_str().unwrap_or_default().to_owned();
                    (part("scope"), part("key"))
                });
                if listing.version != order.ticket.version
                    || listing.free < order.quantity
                    || key.as_ref().is_some_and(|key| !answered.contains(key))
                    || !accounts.insert((&order.ticket.id, &order.user_id))
                {
                    return None;
                }
                listing.free -= order.quantity;
                let mut row = serde_json::json!({
                    "id": order.id,
                    "userId": order.user_id,
                    "ticketId": order.ticket.id,
                    "status": order.status.as_str(),
                    "expiresAt": order.deadline.expires_at.as_millis(),
                    "reservedUntil": order.deadline.reserved_until.as_millis(),
                    "quantity": order.quantity,
                    "perAccount": listing.per_account,
                    "event": outbox::json_row(&p.event)?,
                });
                if let Some((scope, key)) = key {
                    (row["scope"], row["key"]) = (scope.into(), key.into());
                }
                Some(row)
            })
            .collect();
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(HashSet::new());
        }
        let pairs = |set: HashSet<(String, String)>| {
            let pairs: Vec<[String; 2]> = set.into_iter().map(|(a, b)| [a, b]).collect();
            serde_json::to_string(&pairs).expect("pairs serialize")
        };
        let written: Vec<String> = query(&SQL)
            .bind(serde_json::Value::from(rows).to_string())
            .bind(pairs(admitted))
            .bind(pairs(answered))
            .scalars(&mut tx)
            .await?;
        if !written.is_empty() {
            tx.signal_on_commit();
        }
        tx.commit().await?;
        Ok(written.into_iter().collect())
    }
}

/// SQL, two CTEs of [`ClaimUnits::place`]'s statement: `name`, the pairs in `param` (a
/// JSON array of two-element arrays) whose order is not in `ok` (`columns`: each column
/// and the batch row's field it matches); then `action` (`UPDATE ... SET ...` or
/// `DELETE FROM ...`) on the rows with those pairs, found by the pair's index whatever
/// the statistics say (each column `= ANY (ARRAY(...))`, then the pair).
fn undo_left_out(name: &str, param: &str, columns: [(&str, &str); 2], action: &str) -> String {
    let [(a, field_a), (b, field_b)] = columns;
    format!(
        "{name} AS MATERIALIZED ( \
           SELECT j->>0 AS {a}, j->>1 AS {b} FROM jsonb_array_elements({param}::jsonb) j \
           WHERE NOT EXISTS (SELECT 1 FROM ok \
             WHERE ok.r->>'{field_a}' = j->>0 AND ok.r->>'{field_b}' = j->>1)), \
         {name}_undone AS ( \
           {action} \
           WHERE {a} = ANY (ARRAY(SELECT {a} FROM {name})) \
             AND {b} = ANY (ARRAY(SELECT {b} FROM {name})) \
             AND ({a}, {b}) IN (SELECT {a}, {b} FROM {name}))"
    )
}

impl BatchStatement for ClaimUnits {
    type Input = Placement;
    type Output = bool;

    async fn run(&self, placements: Vec<Placement>) -> BatchResult<bool> {
        let written = self
            .place(&placements)
            .await
            .map_err(|e| failed("a batched claim", e))?;
        Ok(placements
            .iter()
            .map(|p| written.contains(&p.event.id))
            .collect())
    }
}
