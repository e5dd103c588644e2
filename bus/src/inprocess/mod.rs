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

use crate::bus::{ConsumerLag, DeadLetter, EventBus, Handler, RetryPolicy};
use crate::envelope::Envelope;
use crate::outbox::{bind_event, read_event};
use ticketing_contracts::events::Subject;
use ticketing_contracts::time::now_millis;
use ticketing_store::{query, Store};

mod consumer;
mod log;
mod worker;

use consumer::Consumer;
use log::spawn_pruner;
use worker::Worker;

/// Events a consumer holds in memory at once (claimed, waiting for a retry or settled
/// above the floor).
const WINDOW: usize = 1024;
/// Look for events appended by another process this often.
const POLL: Duration = Duration::from_secs(1);
/// A claimed event not settled within this long (its subscriber was aborted mid-handler)
/// is handed out again, like JetStream's ack wait.
const ACK_WAIT: Duration = Duration::from_secs(30);
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
    // Failed deliveries of events not yet settled, so that a restart does not give a
    // failing event fresh attempts (JetStream keeps its delivery count the same way).
    "CREATE TABLE IF NOT EXISTS attempts (
        consumer_group TEXT NOT NULL,
        subject TEXT NOT NULL,
        seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (consumer_group, subject, seq)
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
                let name: String = row.get("subject")?;
                let subject = Subject::parse(&name)
                    .with_context(|| format!("unknown subject {name:?} in the log"))?;
                Ok(LoggedEvent {
                    seq: row.get("seq")?,
                    published_at: row.get("published_at")?,
                    event: read_event(row, subject)?,
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
                let failing: i64 = query(
                    "SELECT COUNT(*) FROM attempts WHERE consumer_group = $1 AND subject = $2",
                )
                .bind(group)
                .bind(subject.as_str())
                .scalar(store.writer())
                .await?;
                let mut window = consumer.window.lock().expect("window lock");
                window.attempts_on_disk = failing > 0;
                window.floor = floor;
                window.persisted = floor;
                window.read_to = floor;
                anyhow::Ok(())
            })
            .await?;
        Ok(consumer)
    }
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
        // One transaction, one cached single-row statement run per event: SQLite runs a
        // prepared statement again for the cost of its binds, where a multi-row
        // statement (its text depending on the batch's length) was parsed every time.
        // The id is unique: a republished event is accepted and dropped.
        let mut tx = store.begin().await?;
        const SQL: &str = "INSERT INTO events (event_id, subject, payload, traceparent, \
            tracestate, produced_at, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
            ON CONFLICT (event_id) DO NOTHING";
        for event in events {
            bind_event(query(SQL), event)
                .bind(now)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
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

    async fn consumer_lag(&self) -> anyhow::Result<Vec<ConsumerLag>> {
        let store = self.inner.store().await?;
        // Above the stored floor (moved at most every few ms while busy): on the
        // subject index, and small unless a consumer is behind.
        let rows = query(
            "SELECT c.consumer_group, c.subject, (SELECT COUNT(*) FROM events e \
             WHERE e.subject = c.subject AND e.seq > c.floor) AS pending FROM cursors c",
        )
        .fetch_all(store.reader())
        .await?;
        let mut lags = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.get("subject")?;
            if let Some(subject) = Subject::parse(&name) {
                lags.push(ConsumerLag {
                    group: row.get("consumer_group")?,
                    subject,
                    pending: row.get::<i64>("pending")?.max(0) as u64,
                });
            }
        }
        Ok(lags)
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
                    event: read_event(row, subject)?,
                    attempts: row.get::<i64>("attempts")? as u32,
                    error: row.get("error")?,
                })
            })
            .collect()
    }
}
