//! The transactional outbox: a service writes its events into its own database in the
//! transaction that makes the change ([`enqueue`]), and a relay ([`Outbox`]) publishes
//! them to the bus afterwards. A change is never committed without its events, and an
//! event never announces a change that rolled back.
//!
//! The relay publishes in sequence order, deletes rows only once the bus has confirmed
//! them, and retries with backoff while the bus is down. Delivery to the bus is
//! at-least-once; a row published twice (relay killed between publish and delete) is
//! dropped by the bus's deduplication on the event id. Published rows are deleted
//! rather than marked: the bus keeps the log (`ticketing events tail`), and a table that
//! holds only pending rows needs no index beyond its key and no pruning.
//!
//! Several replicas on PostgreSQL: a relay pass holds a transaction-scoped advisory lock,
//! so one replica at a time publishes and order is kept; a replica that finds the lock
//! taken comes back shortly (its rows are then published by whichever relay runs next).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::SharedBus;
use crate::envelope::Envelope;
use crate::instrumented::Instrumented;
use ticketing_contracts::events::Subject;
use ticketing_store::{query, Backend, On, Query, Row, Store, Tx};

/// Key of the PostgreSQL advisory lock that elects the publishing relay (one per
/// service database, so a constant is enough).
const RELAY_LOCK: i64 = 7_301_000_000_000_002;

/// Write `event` into the outbox inside the caller's transaction; its commit wakes the
/// relay ([`Tx::signal_on_commit`]).
///
/// On PostgreSQL the row is written at the commit, with every other event the
/// transaction enqueued, by one statement ([`Tx::defer`]): a listener handling a batch
/// of events that each publish one pays one round trip for all of them. Their sequence
/// numbers keep the order they were enqueued in.
pub async fn enqueue(tx: &mut Tx, event: &Envelope) -> Result<(), ticketing_store::Error> {
    const SQL: &str = "INSERT INTO outbox \
        (event_id, subject, payload, traceparent, tracestate, produced_at) \
        VALUES ($1, $2, $3, $4, $5, $6)";
    tx.signal_on_commit();
    if tx.backend() == Backend::Postgres {
        if let Some(row) = json_row(event) {
            tx.defer(ENQUEUE_ALL.as_str(), row.to_string());
            return Ok(());
        }
    }
    bind_event(query(SQL), event).execute(tx).await?;
    Ok(())
}

/// Write `event` into the outbox unless a row with its id is there already (on conflict
/// do nothing, decided by the unique index, never by a look first); whether it wrote it.
/// For an event a process may produce again with the same id (a job fired twice):
/// once it was published and its row deleted, the bus drops the id as a duplicate.
/// Written at once on either engine (not deferred), so the conflict is seen here.
pub async fn enqueue_once(tx: &mut Tx, event: &Envelope) -> Result<bool, ticketing_store::Error> {
    const SQL: &str = "INSERT INTO outbox \
        (event_id, subject, payload, traceparent, tracestate, produced_at) \
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING";
    tx.signal_on_commit();
    Ok(bind_event(query(SQL), event).execute(tx).await? == 1)
}

/// `event` as one element of a JSON array that [`insert_from_json`] reads; `None` when
/// its payload is not text (payloads are JSON, so they travel as text; anything else
/// has to be bound as bytes).
pub fn json_row(event: &Envelope) -> Option<serde_json::Value> {
    let payload = std::str::from_utf8(&event.payload).ok()?;
    Some(serde_json::json!({
        "id": event.id,
        "subject": event.subject.as_str(),
        "payload": payload,
        "traceparent": event.traceparent,
        "tracestate": event.tracestate,
        "producedAt": event.produced_at,
    }))
}

/// PostgreSQL: `INSERT INTO outbox ... SELECT` of the events `e`, a JSON value made by
/// [`json_row`] (an alias or expression of the caller's `FROM`, which follows). Rows
/// inserted in one statement take their sequence numbers in the order they are selected.
/// A statement built on it runs through [`enqueue_in_statement`].
pub fn insert_from_json(e: &str) -> String {
    format!(
        "INSERT INTO outbox (event_id, subject, payload, traceparent, tracestate, produced_at) \
         SELECT {e}->>'id', {e}->>'subject', convert_to({e}->>'payload', 'UTF8'), \
         {e}->>'traceparent', {e}->>'tracestate', ({e}->>'producedAt')::bigint"
    )
}

/// PostgreSQL: run `sql`, a statement of its own that writes the caller's rows and
/// enqueues their events with [`insert_from_json`] (`RETURNING event_id`), `$1` bound to
/// `json`; the ids of the events it enqueued. It commits by itself and wakes the relay.
/// For a batch that must cost one round trip (the orders placer); anything else
/// enqueues in a transaction with [`enqueue`].
pub async fn enqueue_in_statement(
    store: &Store,
    sql: &str,
    json: String,
) -> Result<Vec<String>, ticketing_store::Error> {
    let ids: Vec<String> = query(sql).bind(json).scalars(store.writer()).await?;
    if !ids.is_empty() {
        store.commit_signal().notify_one();
    }
    Ok(ids)
}

/// The rows [`enqueue`] deferred, as one JSON array, in order (`ORDER BY` the position:
/// the sequence numbers are drawn as the rows are inserted).
static ENQUEUE_ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS rows(e, n) ORDER BY n",
        insert_from_json("e")
    )
});

/// Bind `event`'s columns (id, subject, payload, traceparent, tracestate, produced_at),
/// in this order; the in-process bus's log has the same.
pub fn bind_event<'q>(query: Query<'q>, event: &Envelope) -> Query<'q> {
    query
        .bind(&event.id)
        .bind(event.subject.as_str())
        .bind(event.payload.to_vec())
        .bind(event.traceparent.clone())
        .bind(event.tracestate.clone())
        .bind(event.produced_at)
}

/// The event of a row holding [`bind_event`]'s columns, its subject already parsed.
pub(crate) fn read_event(row: &Row, subject: Subject) -> Result<Envelope, ticketing_store::Error> {
    let payload: Vec<u8> = row.get("payload")?;
    Ok(Envelope {
        id: row.get("event_id")?,
        subject,
        payload: payload.into(),
        traceparent: row.get("traceparent")?,
        tracestate: row.get("tracestate")?,
        produced_at: row.get("produced_at")?,
    })
}

/// How long the relay may take, at shutdown, to publish what is still pending.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Tuning of the relay.
#[derive(Debug, Clone, Copy)]
pub struct OutboxOptions {
    /// Rows published per bus round trip.
    pub batch: i64,
    /// Safety net: look for unsent rows this often even without a notification (rows
    /// committed by another replica, or a notification lost to a crash).
    pub poll: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            batch: 500,
            poll: Duration::from_secs(1),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// The relay of one service's outbox.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    bus: Instrumented,
    options: OutboxOptions,
    /// One pass at a time in this process (clones share it); replicas are handled by
    /// the database lock.
    pass: Mutex<()>,
}

/// What one relay pass did.
enum Pass {
    /// Published a full batch: there may be more.
    More,
    /// Nothing left to publish.
    Idle,
    /// Another replica is publishing.
    Busy,
}

impl Outbox {
    pub fn new(store: Store, bus: SharedBus) -> Outbox {
        Self::with_options(store, bus, OutboxOptions::default())
    }

    pub fn with_options(store: Store, bus: SharedBus, options: OutboxOptions) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                store,
                // Counted and traced as it publishes (`instrumented.rs`).
                bus: Instrumented::wrap(bus),
                options,
                pass: Mutex::new(()),
            }),
        }
    }

    /// Start the relay loop; it ends on `shutdown`.
    pub fn spawn(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(shutdown).await })
    }

    /// Publish everything pending now (tests, and the CLI); returns the rows published.
    pub async fn flush(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let (pass, published) = self.pass().await?;
            total += published;
            match pass {
                Pass::More => continue,
                Pass::Idle => return Ok(total),
                Pass::Busy => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    async fn run(&self, shutdown: CancellationToken) {
        self.relay(&shutdown).await;
        // Shutting down: requests have finished, so publish what they committed now
        // rather than at the next start (bounded: a bus that is down keeps it for then).
        match tokio::time::timeout(FINAL_FLUSH, self.flush()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "outbox: final flush failed; rows stay for the next start")
            }
            Err(_) => tracing::warn!("outbox: final flush timed out; rows stay for the next start"),
        }
    }

    async fn relay(&self, shutdown: &CancellationToken) {
        let options = self.inner.options;
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let delay = match self.pass().await {
                Ok((Pass::More, _)) => {
                    failures = 0;
                    continue;
                }
                Ok((Pass::Idle, _)) => {
                    failures = 0;
                    options.poll
                }
                Ok((Pass::Busy, _)) => Duration::from_millis(20),
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let delay = options
                        .backoff_base
                        .saturating_mul(1 << failures.min(16))
                        .min(options.backoff_max);
                    tracing::warn!(error = %err, retry_in = ?delay, "outbox relay failed");
                    delay
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // A commit that enqueued events (`Tx::signal_on_commit`); after a
                // failure, wait out the backoff even if signalled.
                _ = self.inner.store.commit_signal().notified(), if failures == 0 => {}
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Publish one batch of pending rows and delete them.
    async fn pass(&self) -> anyhow::Result<(Pass, usize)> {
        let _pass = self.inner.pass.lock().await;
        let store = &self.inner.store;
        let batch = self.inner.options.batch;
        match store.backend() {
            Backend::Postgres => {
                let mut tx = store.begin().await?;
                let elected: bool = query("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(RELAY_LOCK)
                    .scalar(&mut tx)
                    .await?;
                if !elected {
                    tx.rollback().await?;
                    return Ok((Pass::Busy, 0));
                }
                let rows = query(SELECT_PENDING).bind(batch).fetch_all(&mut tx).await?;
                let (seqs, events) = decode_rows(&rows)?;
                if !events.is_empty() {
                    self.inner.bus.publish_batch(&events).await?;
                }
                delete_sent(&mut tx, &seqs).await?;
                tx.commit().await?;
                Ok((pass_of(rows.len(), batch), events.len()))
            }
            Backend::Sqlite => {
                // Read outside a write transaction: holding the single writer while
                // waiting for the bus would stall every write of the service.
                let rows = query(SELECT_PENDING)
                    .bind(batch)
                    .fetch_all(store.reader())
                    .await?;
                let (seqs, events) = decode_rows(&rows)?;
                if !events.is_empty() {
                    self.inner.bus.publish_batch(&events).await?;
                }
                // A row deleted twice or left for the next pass is harmless. One
                // cached statement per row in one transaction: a statement with the
                // batch's length in its text would be parsed on every pass.
                let mut tx = store.begin().await?;
                for seq in &seqs {
                    query("DELETE FROM outbox WHERE seq = $1")
                        .bind(*seq)
                        .execute(&mut tx)
                        .await?;
                }
                tx.commit().await?;
                Ok((pass_of(rows.len(), batch), events.len()))
            }
        }
    }
}

/// Every row is pending: published rows are deleted.
const SELECT_PENDING: &str = "SELECT seq, event_id, subject, payload, traceparent, tracestate, \
     produced_at FROM outbox ORDER BY seq LIMIT $1";

fn pass_of(rows: usize, batch: i64) -> Pass {
    if rows as i64 >= batch {
        Pass::More
    } else {
        Pass::Idle
    }
}

/// The rows' sequence numbers (all of them, to be deleted) and their events. A row
/// with an unknown subject cannot be published by anyone: it is logged and dropped so
/// it does not block the rows behind it.
fn decode_rows(rows: &[Row]) -> Result<(Vec<i64>, Vec<Envelope>), ticketing_store::Error> {
    let mut seqs = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.get("seq")?;
        seqs.push(seq);
        let name: String = row.get("subject")?;
        let Some(subject) = Subject::parse(&name) else {
            tracing::error!(seq, subject = %name, "outbox row with an unknown subject dropped");
            continue;
        };
        events.push(read_event(row, subject)?);
    }
    Ok((seqs, events))
}

async fn delete_sent<'a>(
    on: impl Into<On<'a>>,
    seqs: &[i64],
) -> Result<(), ticketing_store::Error> {
    let mut on = on.into();
    // Explicit sequence numbers, not a range: on PostgreSQL a row committed late with a
    // lower number than ones already read must not go without being published.
    for chunk in seqs.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM outbox WHERE seq IN ({})",
            placeholders.join(", ")
        );
        let mut delete = query(&sql).persistent(false);
        for seq in chunk {
            delete = delete.bind(*seq);
        }
        delete.execute(on.reborrow()).await?;
    }
    Ok(())
}
