//! The embedded mode's bus: the same semantics as the JetStream one (durable log,
//! one durable consumer per (group, subject) shared by its subscribers, explicit ack,
//! redelivery with backoff, dead letters, duplicate publishes dropped), kept in one
//! SQLite file so that killing the process at any instant loses nothing.
//!
//! Layout of the file:
//! - `events`: the log, in publish order (`seq`), unique on the event id;
//! - `cursors`: per consumer, the `floor` below which every event is settled (acked or
//!   dead-lettered); events above it are redelivered after a restart;
//! - `dead_letters`: copies of the events a group gave up on.
//!
//! Consumers are woken in memory on publish (no polling latency); a slow poll picks up
//! events another process (`ticketing events publish`) appended. Writes are batched: a
//! `publish_batch` is one commit per 256 events, and a cursor moves at most every few
//! milliseconds, so with WAL and `synchronous = NORMAL` there is no fsync per event.
//! (That survives a process crash; an OS crash may lose the last commits, as for the
//! services' files.)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::{watch, Mutex, Notify, OnceCell};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::bus::{
    self, run_handler, DeadLetter, EventBus, Handler, RetryPolicy, PRUNE_BATCH, RETENTION,
};
use super::contracts::Subject;
use super::envelope::Envelope;
use crate::store::{query, Row, Store};
use crate::timefmt::now_millis;

/// Events a consumer holds in memory at once (claimed, waiting for a retry or settled
/// above the floor).
const WINDOW: usize = 1024;
/// Look for events appended by another process this often.
const POLL: Duration = Duration::from_secs(1);
/// A claimed event not settled within this long (its subscriber was aborted mid-handler)
/// is handed out again, like JetStream's ack wait.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Events per insert statement (7 parameters each, far below SQLite's limit).
const PUBLISH_CHUNK: usize = 256;
/// Persist a moved cursor at least this often while busy.
const CURSOR_EVERY: Duration = Duration::from_millis(20);

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        payload BLOB NOT NULL,
        traceparent TEXT,
        tracestate TEXT,
        produced_at INTEGER NOT NULL,
        published_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject, seq)",
    "CREATE TABLE IF NOT EXISTS cursors (
        consumer_group TEXT NOT NULL,
        subject TEXT NOT NULL,
        floor INTEGER NOT NULL,
        PRIMARY KEY (consumer_group, subject)
    )",
    "CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        consumer_group TEXT NOT NULL,
        subject TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        traceparent TEXT,
        tracestate TEXT,
        produced_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        dead_at INTEGER NOT NULL,
        UNIQUE (consumer_group, subject, seq)
    )",
];

/// An event of the log with its position.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    pub published_at: i64,
    pub event: Envelope,
}

/// The in-process bus. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Opened, with the schema in place, on first use; beside it the pruner's guard.
    log: OnceCell<(Store, DropGuard)>,
    policy: RetryPolicy,
    consumers: SyncMutex<HashMap<(String, Subject), Arc<Consumer>>>,
    /// Bumped after every commit of the log; subscribers wait on it.
    published: watch::Sender<u64>,
}

impl Inner {
    /// The log's store, opened (with the checkpointer that every store has, and the
    /// pruner) on first use.
    async fn store(&self) -> anyhow::Result<&Store> {
        let (store, _pruner) = self
            .log
            .get_or_try_init(|| async {
                let store = Store::open_sqlite_unmigrated(&self.path)?;
                let mut tx = store.begin().await?;
                for statement in SCHEMA {
                    query(statement).execute(&mut tx).await?;
                }
                tx.commit().await?;
                let pruner = spawn_pruner(store.clone());
                anyhow::Ok((store, pruner))
            })
            .await
            .with_context(|| format!("opening the event log {}", self.path.display()))?;
        Ok(store)
    }
}

impl InProcessBus {
    /// Open (creating if missing) the log at `path`.
    pub async fn open(path: &Path) -> anyhow::Result<InProcessBus> {
        Self::open_with(path, RetryPolicy::default()).await
    }

    pub async fn open_with(path: &Path, policy: RetryPolicy) -> anyhow::Result<InProcessBus> {
        let bus = Self::open_lazy(path, policy)?;
        bus.ready().await?;
        Ok(bus)
    }

    /// Like [`open`](Self::open) without touching the file yet: it is opened on first
    /// use. For synchronous constructors (the test environment).
    pub fn open_lazy(path: &Path, policy: RetryPolicy) -> anyhow::Result<InProcessBus> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating directory {}", dir.display()))?;
            }
        }
        Ok(InProcessBus {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                log: OnceCell::new(),
                policy,
                consumers: SyncMutex::new(HashMap::new()),
                published: watch::Sender::new(0),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn ready(&self) -> anyhow::Result<()> {
        self.inner.store().await.map(drop)
    }

    /// Up to `limit` events of the log after position `after`, optionally of one subject
    /// (for `ticketing events tail`).
    pub async fn read_log(
        &self,
        after: i64,
        subject: Option<Subject>,
        limit: i64,
    ) -> anyhow::Result<Vec<LoggedEvent>> {
        let store = self.inner.store().await?;
        let rows = query(
            "SELECT seq, event_id, subject, payload, traceparent, tracestate, produced_at, \
             published_at FROM events WHERE seq > $1 AND ($2 IS NULL OR subject = $2) \
             ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(subject.map(Subject::as_str))
        .bind(limit)
        .fetch_all(store.reader())
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("subject")?;
                let subject = Subject::parse(&name)
                    .with_context(|| format!("unknown subject {name:?} in the log"))?;
                Ok(LoggedEvent {
                    seq: row.try_get("seq")?,
                    published_at: row.try_get("published_at")?,
                    event: envelope_of(row, subject)?,
                })
            })
            .collect()
    }

    /// The position of the newest event (0 when empty).
    pub async fn last_seq(&self) -> anyhow::Result<i64> {
        let store = self.inner.store().await?;
        Ok(query("SELECT COALESCE(MAX(seq), 0) FROM events")
            .scalar(store.reader())
            .await?)
    }

    /// The consumer of (group, subject), created (with its cursor) on first use.
    async fn consumer(&self, group: &str, subject: Subject) -> anyhow::Result<Arc<Consumer>> {
        let consumer = self
            .inner
            .consumers
            .lock()
            .expect("consumers lock")
            .entry((group.to_owned(), subject))
            .or_insert_with(|| Arc::new(Consumer::new(group, subject)))
            .clone();
        let store = self.inner.store().await?;
        consumer
            .loaded
            .get_or_try_init(|| async {
                // A new group starts at the beginning of the log, like a JetStream
                // durable with DeliverPolicy::All: nothing published before its first
                // subscription is missed.
                query(
                    "INSERT INTO cursors (consumer_group, subject, floor) VALUES ($1, $2, 0) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(group)
                .bind(subject.as_str())
                .execute(store.writer())
                .await?;
                let floor: i64 =
                    query("SELECT floor FROM cursors WHERE consumer_group = $1 AND subject = $2")
                        .bind(group)
                        .bind(subject.as_str())
                        .scalar(store.writer())
                        .await?;
                let mut window = consumer.window.lock().expect("window lock");
                window.floor = floor;
                window.persisted = floor;
                window.read_to = floor;
                anyhow::Ok(())
            })
            .await?;
        Ok(consumer)
    }
}

/// Delete what is older than [`RETENTION`], as JetStream's `max_age` does, hourly
/// until the guard is dropped. Consumers never look below their cursor, so a gap under
/// it is invisible to them.
fn spawn_pruner(store: Store) -> DropGuard {
    let stop = CancellationToken::new();
    bus::spawn_pruner("in-process log", stop.clone(), move || {
        let store = store.clone();
        async move { prune(&store, now_millis() - RETENTION.as_millis() as i64).await }
    });
    stop.drop_guard()
}

async fn prune(store: &Store, before_millis: i64) -> Result<u64, sqlx::Error> {
    let Some(keep_from) = first_to_keep(store, before_millis).await? else {
        return Ok(0);
    };
    // A batch per statement, so that publishes never wait long behind it.
    let events = bus::delete_in_batches(store, || {
        query(
            "DELETE FROM events WHERE seq IN \
             (SELECT seq FROM events WHERE seq < $1 ORDER BY seq LIMIT $2)",
        )
        .bind(keep_from)
        .bind(PRUNE_BATCH)
    })
    .await?;
    let letters = query("DELETE FROM dead_letters WHERE dead_at < $1")
        .bind(before_millis)
        .execute(store.writer())
        .await?;
    Ok(events + letters)
}

/// The position of the first event published at or after `before_millis` (past the end
/// when none is; `None` for an empty log). The log is in publish order, so this is a
/// binary search over positions: a few point reads, where a scan for the first young
/// event would read everything that goes (there is no index on the time).
async fn first_to_keep(store: &Store, before_millis: i64) -> Result<Option<i64>, sqlx::Error> {
    let bounds = query("SELECT MIN(seq) AS low, MAX(seq) AS high FROM events")
        .fetch_one(store.reader())
        .await?;
    let (Some(mut low), Some(high)) = (
        bounds.try_get("low")?,
        bounds.try_get::<Option<i64>>("high")?,
    ) else {
        return Ok(None);
    };
    // Everything below `low` goes; the first event at or after `high` stays (or there is
    // none).
    let mut high = high + 1;
    while low < high {
        let mid = low + (high - low) / 2;
        let next =
            query("SELECT seq, published_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1")
                .bind(mid)
                .fetch_optional(store.reader())
                .await?;
        match next {
            Some(event) if event.try_get::<i64>("published_at")? < before_millis => {
                low = event.try_get::<i64>("seq")? + 1;
            }
            _ => high = mid,
        }
    }
    Ok(Some(low))
}

fn envelope_of(row: &Row, subject: Subject) -> Result<Envelope, sqlx::Error> {
    let payload: Vec<u8> = row.try_get("payload")?;
    Ok(Envelope {
        id: row.try_get("event_id")?,
        subject,
        payload: payload.into(),
        traceparent: row.try_get("traceparent")?,
        tracestate: row.try_get("tracestate")?,
        produced_at: row.try_get("produced_at")?,
    })
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        self.publish_batch(std::slice::from_ref(event)).await
    }

    async fn publish_batch(&self, events: &[Envelope]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let store = self.inner.store().await?;
        let now = now_millis();
        // One multi-row statement per chunk, without a transaction around them: each
        // statement is atomic, and a chunk that fails is republished whole by the caller
        // (the rows that made it are then dropped as duplicates).
        for chunk in events.chunks(PUBLISH_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 7;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4,
                        n + 5,
                        n + 6,
                        n + 7
                    )
                })
                .collect();
            // The id is unique: a republished event is accepted and dropped.
            let sql = format!(
                "INSERT INTO events (event_id, subject, payload, traceparent, tracestate, \
                 produced_at, published_at) VALUES {} ON CONFLICT (event_id) DO NOTHING",
                rows.join(", ")
            );
            // The text depends on the chunk's length: not worth caching.
            let mut insert = query(&sql).persistent(false);
            for event in chunk {
                insert = insert
                    .bind(&event.id)
                    .bind(event.subject.as_str())
                    .bind(event.payload.as_ref())
                    .bind(event.traceparent.as_deref())
                    .bind(event.tracestate.as_deref())
                    .bind(event.produced_at)
                    .bind(now);
            }
            insert.execute(store.writer()).await?;
        }
        self.inner.published.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        subject: Subject,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        self.ready().await?;
        let consumer = self.consumer(group, subject).await?;
        let worker = Worker {
            bus: self.clone(),
            consumer,
            handler,
            published: self.inner.published.subscribe(),
        };
        Ok(tokio::spawn(worker.run(shutdown)))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        let store = self.inner.store().await?;
        query("SELECT 1").execute(store.reader()).await?;
        Ok(())
    }

    async fn dead_letters(&self, group: &str, subject: Subject) -> anyhow::Result<Vec<DeadLetter>> {
        let store = self.inner.store().await?;
        let rows = query(
            "SELECT event_id, payload, traceparent, tracestate, produced_at, attempts, error \
             FROM dead_letters WHERE consumer_group = $1 AND subject = $2 ORDER BY id",
        )
        .bind(group)
        .bind(subject.as_str())
        .fetch_all(store.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    group: group.to_owned(),
                    event: envelope_of(row, subject)?,
                    attempts: row.try_get::<i64>("attempts")? as u32,
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }
}

/// The durable consumer of one (group, subject): its window of events above the floor,
/// shared by every subscriber of the group so each event is claimed by one of them.
struct Consumer {
    group: String,
    subject: Subject,
    loaded: OnceCell<()>,
    window: SyncMutex<Window>,
    /// One reader of the log at a time.
    filling: Mutex<()>,
    /// A subscriber released work (a retry rescheduled, room in the window).
    released: Notify,
}

#[derive(Default)]
struct Window {
    /// Every event at or below is settled.
    floor: i64,
    /// The floor as stored in `cursors`.
    persisted: i64,
    persisted_at: Option<Instant>,
    /// The last position read from the log.
    read_to: i64,
    /// Publish counter seen by the last read, and when the log was last polled.
    read_version: u64,
    polled_at: Option<Instant>,
    /// The last read filled the window: read again without waiting for a publish.
    more: bool,
    slots: BTreeMap<i64, Slot>,
}

struct Slot {
    event: Arc<Envelope>,
    /// Deliveries so far.
    attempts: u32,
    due: Instant,
    state: SlotState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Ready,
    Claimed,
    Settled,
}

enum Claim {
    Event {
        seq: i64,
        event: Arc<Envelope>,
        attempts: u32,
    },
    /// Nothing ready; the earliest retry is due then.
    Wait(Option<Instant>),
}

impl Consumer {
    fn new(group: &str, subject: Subject) -> Consumer {
        Consumer {
            group: group.to_owned(),
            subject,
            loaded: OnceCell::new(),
            window: SyncMutex::new(Window::default()),
            filling: Mutex::new(()),
            released: Notify::new(),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().expect("window lock")
    }

    /// Read newly published events into the window when there may be some.
    async fn fill(&self, bus: &Inner) -> anyhow::Result<()> {
        let _filling = self.filling.lock().await;
        let version = *bus.published.borrow();
        let (after, room) = {
            let w = self.window();
            let stale = w.polled_at.is_none_or(|at| at.elapsed() >= POLL);
            if !(w.more || stale || w.read_version != version) {
                return Ok(());
            }
            (w.read_to, WINDOW.saturating_sub(w.slots.len()))
        };
        if room == 0 {
            return Ok(());
        }
        let rows = query(
            "SELECT seq, event_id, payload, traceparent, tracestate, produced_at FROM events \
             WHERE subject = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(self.subject.as_str())
        .bind(after)
        .bind(room as i64)
        .fetch_all(bus.store().await?.reader())
        .await?;
        let now = Instant::now();
        let mut w = self.window();
        w.read_version = version;
        w.polled_at = Some(now);
        w.more = rows.len() == room;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let event = Arc::new(envelope_of(row, self.subject)?);
            w.slots.insert(
                seq,
                Slot {
                    event,
                    attempts: 0,
                    due: now,
                    state: SlotState::Ready,
                },
            );
            w.read_to = seq;
        }
        if w.slots.is_empty() {
            // Nothing in flight: everything read is settled.
            w.floor = w.floor.max(w.read_to);
        }
        Ok(())
    }

    /// Claim the oldest event that is due.
    fn claim(&self) -> Claim {
        let now = Instant::now();
        let mut w = self.window();
        let mut next_due: Option<Instant> = None;
        for (&seq, slot) in w.slots.iter_mut() {
            if slot.state == SlotState::Claimed && now.duration_since(slot.due) >= ACK_WAIT {
                slot.state = SlotState::Ready;
            }
            if slot.state != SlotState::Ready {
                continue;
            }
            if slot.due <= now {
                slot.state = SlotState::Claimed;
                // While claimed, `due` is the claim time (for ACK_WAIT).
                slot.due = now;
                slot.attempts += 1;
                return Claim::Event {
                    seq,
                    event: slot.event.clone(),
                    attempts: slot.attempts,
                };
            }
            next_due = Some(next_due.map_or(slot.due, |d| d.min(slot.due)));
        }
        Claim::Wait(next_due)
    }

    /// Record a handled (or dead-lettered) event and move the floor past settled ones.
    fn settle(&self, seq: i64) {
        let mut w = self.window();
        if let Some(slot) = w.slots.get_mut(&seq) {
            slot.state = SlotState::Settled;
        }
        while let Some(entry) = w.slots.first_entry() {
            if entry.get().state != SlotState::Settled {
                break;
            }
            let (seq, _) = entry.remove_entry();
            w.floor = seq;
        }
        if w.slots.is_empty() {
            w.floor = w.floor.max(w.read_to);
        }
    }

    fn reschedule(&self, seq: i64, delay: Duration) {
        if let Some(slot) = self.window().slots.get_mut(&seq) {
            slot.state = SlotState::Ready;
            slot.due = Instant::now() + delay;
        }
        self.released.notify_waiters();
    }

    /// Store the floor when it moved (always when `force`, else at most every
    /// [`CURSOR_EVERY`]): the only write per batch of handled events.
    async fn persist(&self, bus: &Inner, force: bool) -> anyhow::Result<()> {
        let floor = {
            let w = self.window();
            let due = w.persisted_at.is_none_or(|at| at.elapsed() >= CURSOR_EVERY);
            if w.floor <= w.persisted || !(force || due) {
                return Ok(());
            }
            w.floor
        };
        query(
            "UPDATE cursors SET floor = MAX(floor, $1) WHERE consumer_group = $2 AND subject = $3",
        )
        .bind(floor)
        .bind(&self.group)
        .bind(self.subject.as_str())
        .execute(bus.store().await?.writer())
        .await?;
        let mut w = self.window();
        w.persisted = w.persisted.max(floor);
        w.persisted_at = Some(Instant::now());
        Ok(())
    }

    async fn dead_letter(
        &self,
        bus: &Inner,
        seq: i64,
        event: &Envelope,
        attempts: u32,
        error: &str,
    ) -> anyhow::Result<()> {
        query(
            "INSERT INTO dead_letters (consumer_group, subject, seq, event_id, payload, \
             traceparent, tracestate, produced_at, attempts, error, dead_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .bind(&self.group)
        .bind(self.subject.as_str())
        .bind(seq)
        .bind(&event.id)
        .bind(event.payload.as_ref())
        .bind(event.traceparent.as_deref())
        .bind(event.tracestate.as_deref())
        .bind(event.produced_at)
        .bind(attempts as i64)
        .bind(error)
        .bind(now_millis())
        .execute(bus.store().await?.writer())
        .await?;
        Ok(())
    }
}

/// One subscription: claims events of its consumer and runs the handler.
struct Worker {
    bus: InProcessBus,
    consumer: Arc<Consumer>,
    handler: Arc<dyn Handler>,
    published: watch::Receiver<u64>,
}

impl Worker {
    async fn run(mut self, shutdown: CancellationToken) {
        let inner = self.bus.inner.clone();
        let consumer = self.consumer.clone();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Mark the publish counter seen before reading, so a publish racing the
            // read still wakes us below.
            self.published.borrow_and_update();
            if let Err(err) = consumer.fill(&inner).await {
                tracing::warn!(error = %err, group = %consumer.group, subject = %consumer.subject, "reading the event log failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
            match consumer.claim() {
                Claim::Event {
                    seq,
                    event,
                    attempts,
                } => {
                    self.deliver(&inner, seq, &event, attempts).await;
                    self.persist(&inner, false).await;
                }
                Claim::Wait(next_due) => {
                    self.persist(&inner, true).await;
                    let released = consumer.released.notified();
                    let wake_at = next_due.unwrap_or_else(|| Instant::now() + POLL);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.published.changed() => {}
                        _ = released => {}
                        _ = tokio::time::sleep_until(wake_at) => {}
                    }
                }
            }
        }
        self.persist(&inner, true).await;
    }

    async fn deliver(&self, inner: &Inner, seq: i64, event: &Envelope, attempts: u32) {
        let consumer = &self.consumer;
        let error = match run_handler(self.handler.as_ref(), event).await {
            Ok(()) => {
                consumer.settle(seq);
                return;
            }
            Err(err) => err,
        };
        let policy = inner.policy;
        if error.gives_up(attempts, &policy) {
            let message = error.to_string();
            tracing::error!(
                group = %consumer.group, subject = %consumer.subject, event_id = %event.id,
                attempts, error = %message, "event dead-lettered"
            );
            match consumer
                .dead_letter(inner, seq, event, attempts, &message)
                .await
            {
                Ok(()) => consumer.settle(seq),
                // Not recorded: keep it rather than lose it.
                Err(err) => {
                    tracing::warn!(error = %err, "recording a dead letter failed");
                    consumer.reschedule(seq, policy.backoff(attempts));
                }
            }
        } else {
            let delay = policy.backoff(attempts);
            tracing::debug!(
                group = %consumer.group, subject = %consumer.subject, event_id = %event.id,
                attempts, retry_in = ?delay, error = %error, "event handler failed"
            );
            consumer.reschedule(seq, delay);
        }
    }

    async fn persist(&self, inner: &Inner, force: bool) {
        if let Err(err) = self.consumer.persist(inner, force).await {
            tracing::warn!(error = %err, "saving a consumer cursor failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pruning_deletes_what_is_older_than_the_cutoff_only() {
        let dir = tempfile::tempdir().unwrap();
        let bus = InProcessBus::open(&dir.path().join("bus.db"))
            .await
            .unwrap();
        let events: Vec<_> = (0..3)
            .map(|i| Envelope::raw(Subject::TicketCreated, format!("{i}").into_bytes()))
            .collect();
        for event in &events {
            bus.publish(event).await.unwrap();
        }
        // The first two were published an hour ago.
        let hour_ago = now_millis() - 3_600_000;
        query("UPDATE events SET published_at = $1 WHERE seq <= 2")
            .bind(hour_ago)
            .execute(bus.inner.store().await.unwrap().writer())
            .await
            .unwrap();
        let store = bus.inner.store().await.unwrap();
        assert_eq!(prune(store, hour_ago + 1).await.unwrap(), 2);
        let kept: Vec<_> = bus.read_log(0, None, 10).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].event.id, events[2].id);
        // Everything old: everything goes.
        assert_eq!(prune(store, i64::MAX).await.unwrap(), 1);
        assert!(bus.read_log(0, None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_first_event_to_keep_is_found_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let bus = InProcessBus::open(&dir.path().join("bus.db"))
            .await
            .unwrap();
        let store = bus.inner.store().await.unwrap();
        assert_eq!(first_to_keep(store, 0).await.unwrap(), None);
        let events: Vec<_> = (0..50)
            .map(|i| Envelope::raw(Subject::TicketCreated, format!("{i}").into_bytes()))
            .collect();
        bus.publish_batch(&events).await.unwrap();
        // Publish times 10, 20, …, 500, with gaps in the positions.
        query("UPDATE events SET published_at = seq * 10")
            .execute(store.writer())
            .await
            .unwrap();
        query("DELETE FROM events WHERE seq % 7 = 0")
            .execute(store.writer())
            .await
            .unwrap();
        for cut in [0, 10, 11, 69, 70, 71, 250, 500, 501, 10_000] {
            let keep_from = first_to_keep(store, cut).await.unwrap().unwrap();
            // Below it exactly the old events, from it on exactly the young ones.
            let misplaced: i64 = query(
                "SELECT COUNT(*) FROM events \
                 WHERE (seq < $1 AND published_at >= $2) OR (seq >= $1 AND published_at < $2)",
            )
            .bind(keep_from)
            .bind(cut)
            .scalar(store.reader())
            .await
            .unwrap();
            assert_eq!(misplaced, 0, "cut {cut} at {keep_from}");
        }
    }
}
