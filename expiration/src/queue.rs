//! The delay-queue contract and what both implementations share: the wait loop.

use std::sync::Arc;
use std::time::Duration;

use ticketing_contracts::{OrderId, Timestamp};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A job handed to one claimer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueJob {
    pub order_id: OrderId,
    /// When the job was due, as scheduled.
    pub due_at_millis: Timestamp,
    /// The claim's token: [`DelayQueue::complete`] removes the job only while this claim
    /// still holds it (not after the lease ran out and another claimer took it over, nor
    /// after the order was rescheduled).
    pub claim: String,
}

/// Durable one-job-per-order delay queue, shared by every replica of the service.
#[async_trait]
pub trait DelayQueue: Send + Sync + 'static {
    /// Schedule `order_id`'s expiry at `due_at`. Idempotent: scheduling an order again
    /// with the same time changes nothing (even while it is claimed); with another time
    /// it replaces the job (and voids any claim on it).
    async fn schedule(&self, order_id: &OrderId, due_at: Timestamp) -> anyhow::Result<()>;

    /// Drop the order's job, pending or claimed. Unknown orders are fine.
    async fn cancel(&self, order_id: &OrderId) -> anyhow::Result<()>;

    /// Wait until at least one job is due (or `shutdown`), then claim due jobs, earliest
    /// first, up to `max`. Each job is claimed by exactly one caller across replicas for
    /// the lease; one not completed by then is handed out again. Returns an empty list
    /// only on shutdown.
    async fn next_due(
        &self,
        max: usize,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<DueJob>>;

    /// Remove a claimed job, once its expiration event is durably enqueued. A claim that
    /// no longer holds the job (lease lost, rescheduled, cancelled) removes nothing.
    async fn complete(&self, job: &DueJob) -> anyhow::Result<()>;

    /// How many jobs are pending or claimed (metrics).
    async fn pending(&self) -> anyhow::Result<usize>;
}

/// Tuning shared by both implementations.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// How long a claim holds a job before it is handed out again.
    pub lease: Duration,
    /// The longest a waiting [`DelayQueue::next_due`] sleeps before looking again. Jobs
    /// scheduled through this instance wake it at once; this bounds the lateness of jobs
    /// scheduled by another replica (when no replica scheduled a sooner one locally).
    pub max_sleep: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease: Duration::from_secs(30),
            max_sleep: Duration::from_millis(500),
        }
    }
}

/// A claim to make: up to `max` jobs available at `now`, held until `lease_until` under
/// `token`.
pub(crate) struct Claim {
    pub now: Timestamp,
    pub max: usize,
    pub lease_until: Timestamp,
    pub token: String,
}

/// What a backend provides for the shared wait loop.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Claim the jobs `claim` asks for, each held until its lease ends.
    async fn claim(&self, claim: &Claim) -> anyhow::Result<Vec<DueJob>>;
    /// When the next job becomes claimable, if there is one.
    async fn earliest(&self) -> anyhow::Result<Option<Timestamp>>;
}

/// Claim due jobs, or sleep until the earliest one (capped by `max_sleep`), waking early
/// when `wake` is notified (a job scheduled through this instance) or on shutdown.
pub(crate) async fn wait_and_claim<B: Backend + ?Sized>(
    backend: &B,
    wake: &Arc<Notify>,
    options: &QueueOptions,
    max: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<DueJob>> {
    let max = max.max(1);
    loop {
        if shutdown.is_cancelled() {
            return Ok(Vec::new());
        }
        // Register for wake-ups before looking, so a job scheduled between the look and
        // the sleep still wakes us.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let now = Timestamp::now();
        let claim = Claim {
            now,
            max,
            lease_until: now + options.lease,
            token: uuid::Uuid::new_v4().simple().to_string(),
        };
        let jobs = backend.claim(&claim).await?;
        if !jobs.is_empty() {
            return Ok(jobs);
        }
        let sleep = match backend.earliest().await? {
            Some(at) => at.saturating_duration_since(Timestamp::now()),
            None => options.max_sleep,
        }
        .min(options.max_sleep);
        // Due now but claimed by another replica first: look again shortly.
        let sleep = sleep.max(Duration::from_millis(2));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = &mut notified => {}
            _ = shutdown.cancelled() => return Ok(Vec::new()),
        }
    }
}
