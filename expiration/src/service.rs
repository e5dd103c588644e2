//! The expiration service: schedules a job per order from `order:created`, drops it on
//! `order:cancelled` / `payment:created`, and turns due jobs into `expiration:complete`
//! events through the outbox. No HTTP routes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use ticketing_shared::events::outbox::{self, Outbox};
use ticketing_shared::events::{
    groups, inbox, schema, Envelope, ExpirationComplete, Handler, HandlerError, OrderCancelled,
    OrderCreated, PaymentCreated, Subject,
};
use ticketing_shared::health::ReadyCheck;
use ticketing_shared::runtime::{Mounted, Runtime};
use ticketing_shared::store::{query, On, Store};
use ticketing_shared::timefmt::{now_millis, parse_millis};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::{
    DelayQueue, DueJob, QueueOptions, RedisDelayQueue, SqlDelayQueue, MIGRATIONS, SERVICE,
};

/// Jobs claimed per round of the runner.
const BATCH: usize = 64;

/// Where the delay queue lives.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Redis (distributed mode); `None`: the service's own store (`expiration_jobs`).
    pub redis_url: Option<String>,
    /// Prefix of the queue's Redis keys.
    pub redis_prefix: String,
    pub queue: QueueOptions,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            redis_url: None,
            redis_prefix: "expiration".to_owned(),
            queue: QueueOptions::default(),
        }
    }
}

/// The deterministic id of an order's `expiration:complete`: a job fired twice (lease
/// ran out after the event was enqueued, before the job was completed) publishes the same
/// event id again, which the outbox and the bus deduplicate.
pub fn expiration_event(order_id: &str) -> Envelope {
    let mut event = Envelope::new(&ExpirationComplete {
        order_id: order_id.to_owned(),
    });
    event.id = format!("expiration-{order_id}");
    event
}

#[derive(Clone)]
struct State {
    store: Store,
    queue: Arc<dyn DelayQueue>,
}

/// Open the expiration store and queue, start the listeners, the relay and the runner.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let store = Store::open(&rt.location(SERVICE)?, &MIGRATIONS).await?;
    schema::install(&store).await?;
    let mut ready = vec![ReadyCheck::store("expiration-db", &store)];
    let queue: Arc<dyn DelayQueue> = match &settings.redis_url {
        Some(url) => {
            let redis =
                RedisDelayQueue::connect(url, &settings.redis_prefix, settings.queue.clone())
                    .await?;
            let ping = redis.clone();
            ready.push(ReadyCheck::new("expiration-redis", move || {
                let ping = ping.clone();
                async move { ping.len().await.map(|_| ()) }
            }));
            Arc::new(redis)
        }
        None => Arc::new(SqlDelayQueue::new(store.clone(), settings.queue.clone())),
    };
    let outbox = Outbox::new(store.clone(), rt.bus.clone());
    let state = State {
        store: store.clone(),
        queue: queue.clone(),
    };
    let mut tasks = vec![outbox.spawn(rt.shutdown.clone())];
    let handlers: [(Subject, Arc<dyn Handler>); 3] = [
        (Subject::OrderCreated, Arc::new(Schedule(state.clone()))),
        (Subject::OrderCancelled, Arc::new(Drop(state.clone()))),
        (Subject::PaymentCreated, Arc::new(Drop(state.clone()))),
    ];
    tasks.extend(
        rt.subscribe_all(groups::EXPIRATION, &store, handlers)
            .await?,
    );
    tasks.push(spawn_runner(store, outbox, queue, rt.shutdown.clone()));
    Ok(Mounted {
        name: SERVICE,
        router: OpenApiRouter::new(),
        ready,
        tasks,
    })
}

/// Has this group handled `event` already? (The queue lives outside the store's
/// transactions, so its operations run before the inbox mark; they are idempotent.)
async fn processed(store: &Store, event: &Envelope) -> Result<bool, sqlx::Error> {
    Ok(
        query("SELECT 1 FROM inbox WHERE consumer_group = $1 AND event_id = $2")
            .bind(groups::EXPIRATION)
            .bind(&event.id)
            .fetch_optional(store.reader())
            .await?
            .is_some(),
    )
}

/// Mark `event` handled, with `extra` writes in the same transaction.
async fn mark(store: &Store, event: &Envelope, finished: Option<&str>) -> Result<(), sqlx::Error> {
    let Some(mut tx) = inbox::begin(store, groups::EXPIRATION, event).await? else {
        return Ok(());
    };
    if let Some(order_id) = finished {
        query(
            "INSERT INTO finished_orders (order_id, finished_at) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(order_id)
        .bind(now_millis())
        .execute(&mut tx)
        .await?;
    }
    tx.commit().await
}

async fn is_finished<'a>(on: impl Into<On<'a>>, order_id: &str) -> Result<bool, sqlx::Error> {
    Ok(query("SELECT 1 FROM finished_orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(on)
        .await?
        .is_some())
}

/// `order:created` → schedule the order's expiry at `expiresAt`.
struct Schedule(State);

#[async_trait]
impl Handler for Schedule {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let order: OrderCreated = event
            .decode()
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        let due = parse_millis(&order.expires_at).ok_or_else(|| {
            HandlerError::Poison(format!("unreadable expiresAt {:?}", order.expires_at))
        })?;
        if processed(&self.0.store, event).await? {
            return Ok(());
        }
        if !is_finished(self.0.store.reader(), &order.id).await? {
            self.0.queue.schedule(&order.id, due).await?;
        }
        mark(&self.0.store, event, None).await?;
        Ok(())
    }
}

/// `order:cancelled` / `payment:created` → drop the order's pending job.
struct Drop(State);

#[async_trait]
impl Handler for Drop {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError> {
        let order_id = match event.subject {
            Subject::OrderCancelled => event.decode::<OrderCancelled>().map(|o| o.id),
            _ => event.decode::<PaymentCreated>().map(|p| p.order_id),
        }
        .map_err(|e| HandlerError::Poison(e.to_string()))?;
        if processed(&self.0.store, event).await? {
            return Ok(());
        }
        self.0.queue.cancel(&order_id).await?;
        mark(&self.0.store, event, Some(&order_id)).await?;
        Ok(())
    }
}

fn spawn_runner(
    store: Store,
    outbox: Outbox,
    queue: Arc<dyn DelayQueue>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let jobs = match queue.next_due(BATCH, &shutdown).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "expiration queue unavailable");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            if jobs.is_empty() {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            for job in jobs {
                match fire(&store, &job).await {
                    Ok(()) => {
                        outbox.notify();
                        // After the event is durably enqueued; a failure here leaves the
                        // job to fire again after its lease (same event id: deduplicated).
                        if let Err(e) = queue.complete(&job).await {
                            tracing::warn!(order = %job.order_id, error = format!("{e:#}"), "could not complete an expiration job");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(order = %job.order_id, error = %e, "could not fire an expiration; retried after the lease");
                    }
                }
            }
        }
    })
}

/// Enqueue the order's `expiration:complete` unless the order is known to be finished.
/// Once: a job fired again finds its event still pending in the outbox, or, once it was
/// published, the bus drops the event id as a duplicate and consumers' inboxes have it.
async fn fire(store: &Store, job: &DueJob) -> Result<(), sqlx::Error> {
    let event = expiration_event(&job.order_id);
    let mut tx = store.begin().await?;
    if is_finished(&mut tx, &job.order_id).await? {
        return tx.commit().await;
    }
    let enqueued = query("SELECT 1 FROM outbox WHERE event_id = $1")
        .bind(&event.id)
        .fetch_optional(&mut tx)
        .await?
        .is_some();
    if !enqueued {
        outbox::enqueue(&mut tx, &event).await?;
        tracing::info!(order = %job.order_id, due_at = job.due_at_millis, late_ms = now_millis() - job.due_at_millis, "order expired");
    }
    tx.commit().await
}
