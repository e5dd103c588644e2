//! The expiration service: schedules a job per order from `order:created`, drops it on
//! `order:cancelled` / `payment:created`, and turns due jobs into `expiration:complete`
//! events through the outbox. No HTTP routes.

use std::sync::Arc;
use std::time::Duration;

use ticketing_bus::outbox;
use ticketing_bus::{Consumers, Envelope};
use ticketing_contracts::events::{groups, ExpirationComplete, OrderCancelled, PaymentCreated};
use ticketing_contracts::{OrderId, Timestamp};
use ticketing_kit::health::ReadyCheck;
use ticketing_kit::runtime::{Mounted, Runtime};
use ticketing_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::listeners::{is_finished, FinishedListener, OrderCreatedListener, State};
use crate::{
    DelayQueue, DueJob, QueueOptions, RedisDelayQueue, SqlDelayQueue, MIGRATIONS, SERVICE,
};

/// The memory of finished orders is kept as long as an inbox mark: an `order:created`
/// can only arrive (late, or again) while the bus still holds it.
pub const FINISHED_ORDERS_KEEP: Duration = ticketing_bus::inbox::KEEP;

/// The retention of `finished_orders` (table, time column, key).
pub const FINISHED_ORDERS: (&str, &str, &str) = ("finished_orders", "finished_at", "order_id");

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
pub fn expiration_event(order_id: &OrderId) -> Envelope {
    let mut event = Envelope::new(&ExpirationComplete {
        order_id: order_id.clone(),
    });
    event.id = format!("expiration-{order_id}");
    event
}

/// Open the expiration store and queue, start the listeners, the relay and the runner.
pub async fn mount(rt: &Runtime, settings: &Settings) -> anyhow::Result<Mounted> {
    let store = rt.open_store(SERVICE, &MIGRATIONS).await?;
    let mut ready = vec![ReadyCheck::store("expiration-db", &store)];
    let state = match &settings.redis_url {
        Some(url) => {
            let redis =
                RedisDelayQueue::connect(url, &settings.redis_prefix, settings.queue.clone())
                    .await?;
            let ping = redis.clone();
            ready.push(ReadyCheck::new("expiration-redis", move || {
                let ping = ping.clone();
                async move { ping.len().await.map(|_| ()) }
            }));
            State::Outside(Arc::new(redis))
        }
        None => State::InStore(SqlDelayQueue::new(store.clone(), settings.queue.clone())),
    };
    let queue: Arc<dyn DelayQueue> = match &state {
        State::InStore(queue) => Arc::new(queue.clone()),
        State::Outside(queue) => queue.clone(),
    };
    let mut tasks = Vec::new();
    rt.start_outbox(&store, &mut tasks);
    let consumers = Consumers::new(groups::EXPIRATION, &store)
        .listen(OrderCreatedListener(state.clone()))
        .listen(FinishedListener::<OrderCancelled>::new(state.clone()))
        .listen(FinishedListener::<PaymentCreated>::new(state));
    tasks.extend(rt.start_consumers(consumers).await?);
    let (table, column, key) = FINISHED_ORDERS;
    tasks.push(ticketing_store::retention::spawn_table_pruner(
        store.clone(),
        table,
        column,
        key,
        FINISHED_ORDERS_KEEP,
        rt.shutdown.clone(),
    ));
    tasks.push(spawn_pending_sampler(queue.clone(), rt.shutdown.clone()));
    tasks.push(spawn_runner(store, queue, rt.shutdown.clone()));
    Ok(Mounted {
        name: SERVICE,
        router: OpenApiRouter::new(),
        ready,
        tasks,
    })
}

fn spawn_runner(
    store: Store,
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
            // One transaction (one commit) for every job due together: under a burst
            // of deadlines the runner keeps up instead of paying a commit per order.
            if let Err(e) = fire(&store, &jobs).await {
                tracing::warn!(jobs = jobs.len(), error = %e, "could not fire expirations; retried after the lease");
                continue;
            }
            for job in &jobs {
                // After the event is durably enqueued; a failure here leaves the job to
                // fire again after its lease (same event id: deduplicated).
                if let Err(e) = queue.complete(job).await {
                    tracing::warn!(order = %job.order_id, error = format!("{e:#}"), "could not complete an expiration job");
                }
            }
        }
    })
}

/// `ticketing_expirations_pending`: jobs scheduled and not yet fired (the whole queue,
/// shared by the replicas).
fn spawn_pending_sampler(
    queue: Arc<dyn DelayQueue>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    ticketing_kit::telemetry::spawn_sampler(shutdown, move || {
        let queue = queue.clone();
        async move {
            match queue.pending().await {
                Ok(n) => metrics::gauge!("ticketing_expirations_pending").set(n as f64),
                Err(e) => tracing::debug!(error = %e, "sampling the expiration queue failed"),
            }
        }
    })
}

/// Enqueue each order's `expiration:complete` unless the order is known to be finished,
/// in one transaction. Once: a job fired again finds its event still pending in the
/// outbox (`enqueue_once`), or, once it was published, the bus drops the event id as a
/// duplicate and consumers' inboxes have it.
async fn fire(store: &Store, jobs: &[DueJob]) -> Result<(), ticketing_store::Error> {
    let mut tx = store.begin().await?;
    for job in jobs {
        let event = expiration_event(&job.order_id);
        if is_finished(&mut tx, &job.order_id).await? {
            continue;
        }
        if outbox::enqueue_once(&mut tx, &event).await? {
            let late = Timestamp::now().saturating_duration_since(job.due_at_millis);
            metrics::histogram!("ticketing_expiration_lateness_seconds").record(late.as_secs_f64());
            tracing::info!(
                order = %job.order_id,
                due_at = job.due_at_millis.as_millis(),
                late_ms = late.as_millis() as u64,
                "order expired"
            );
        }
    }
    tx.commit().await
}
