//! The event bus's interface: publish durably, consume per consumer group with explicit
//! ack. The backends (`inprocess/`, `nats/`) implement [`EventBus`] and hand what they
//! receive to the delivery engine (`delivery.rs`); they never see a transaction.
//!
//! Delivery is at-least-once. Each (group, subject) pair is one durable consumer shared
//! by every replica of a service, so an event is handled once per group. A handler that
//! fails is retried with backoff; after the bus's attempt limit the message goes to a
//! dead-letter subject.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use ticketing_contracts::events::Subject;

/// How long a bus keeps an event (and a dead letter), handled or not: JetStream's
/// stream `max_age`, and the in-process log's pruning age.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a handler did not finish an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Not yet: the event depends on one still on its way (an update that arrived
    /// before its predecessor). Redelivered at most `RETRY_WAIT_MAX` apart for as long as it takes
    /// and never dead-lettered: an early event must not be lost.
    #[error("retry later: {0}")]
    Retry(String),
    /// The message can never succeed (undecodable payload): dead-letter it at once.
    #[error("poison message: {0}")]
    Poison(String),
    /// A failure (database unavailable, a bug): redelivered with backoff, dead-lettered
    /// after the bus's attempt limit.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<ticketing_store::Error> for HandlerError {
    fn from(err: ticketing_store::Error) -> Self {
        HandlerError::Other(err.into())
    }
}

/// Handles the events of one subscription. Returning `Ok` acknowledges the event.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError>;

    /// Handle several events of `group`, oldest first, all or nothing, if the handler
    /// can (a listener: in one database transaction, one commit for the lot). The bus
    /// takes the events one at a time when the answer is not [`Together::Committed`].
    async fn handle_together(&self, group: &str, events: &[&Envelope]) -> Together {
        let _ = (group, events);
        Together::Alone
    }
}

/// How [`Handler::handle_together`] went.
#[derive(Debug)]
pub enum Together {
    /// Every event handled (and counted); acknowledge them all.
    Committed,
    /// The handler takes events one at a time only.
    Alone,
    /// One event failed: nothing of the batch is kept; take them one at a time, so the
    /// failure is the failing event's alone.
    Failed,
    /// The transaction failed as a whole (the database): trying each event alone now
    /// would fail the same way.
    Broken(String),
}

/// Events handled per transaction at most.
pub const BATCH: usize = 64;

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publish one event; returns once the bus has durably accepted it. Publishing an
    /// event id that was already published is accepted and dropped as a duplicate.
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()>;

    /// Consume `subject` as consumer `group` until `shutdown`. The returned task ends
    /// when the subscription stops.
    async fn subscribe(
        &self,
        group: &str,
        subject: Subject,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>>;

    /// Is the bus reachable?
    async fn ping(&self) -> anyhow::Result<()>;

    /// Publish several events in order; returns once the bus has durably accepted all of
    /// them. Backends override it to pay one round trip / one commit per batch.
    async fn publish_batch(&self, events: &[Envelope]) -> anyhow::Result<()> {
        for event in events {
            self.publish(event).await?;
        }
        Ok(())
    }

    /// How far behind each consumer of this process is (metrics; sampled, not on the
    /// hot path).
    async fn consumer_lag(&self) -> anyhow::Result<Vec<ConsumerLag>> {
        Ok(Vec::new())
    }

    /// The events `group` gave up on for `subject` (oldest first), for operators and tests.
    async fn dead_letters(&self, group: &str, subject: Subject) -> anyhow::Result<Vec<DeadLetter>> {
        let _ = (group, subject);
        anyhow::bail!("this bus does not keep dead letters")
    }
}

/// Events published on `subject` and not yet acknowledged by `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    pub group: String,
    pub subject: Subject,
    pub pending: u64,
}

/// An event a consumer group gave up on: a poison message, or one whose handler kept
/// failing until the attempt limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub group: String,
    pub event: Envelope,
    /// Deliveries made before giving up.
    pub attempts: u32,
    /// The last handler error.
    pub error: String,
}

/// How a bus redelivers an event whose handler failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Deliveries before the event is dead-lettered (`HandlerError::Poison`: at once).
    pub max_attempts: u32,
    /// Delay before the second delivery; doubled for each further one.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryPolicy {
    /// About a minute of retries in total: enough for a predecessor event stuck behind a
    /// briefly unavailable producer, short enough for a poison message to surface.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before redelivering after `attempts` failed deliveries (1-based).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(20);
        self.backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max)
    }
}

/// The longest pause before redelivering a [`HandlerError::Retry`]: what such an event
/// waits for (a predecessor, an order's deadline, a provider coming back) is usually
/// there within a second or two, and an event that waits costs one message per key; a
/// long pause would only delay convergence once it is there.
pub const RETRY_WAIT_MAX: Duration = Duration::from_secs(2);

impl HandlerError {
    /// The pause before redelivering an event that failed this way `attempts` times.
    pub fn redelivery_delay(&self, attempts: u32, policy: &RetryPolicy) -> Duration {
        match self {
            HandlerError::Retry(_) => policy.backoff(attempts).min(RETRY_WAIT_MAX),
            _ => policy.backoff(attempts),
        }
    }

    /// Has an event that failed this way, `attempts` times, run out of chances?
    pub fn gives_up(&self, attempts: u32, policy: &RetryPolicy) -> bool {
        match self {
            HandlerError::Poison(_) => true,
            HandlerError::Retry(_) => false,
            HandlerError::Other(_) => attempts >= policy.max_attempts,
        }
    }
}

pub type SharedBus = Arc<dyn EventBus>;
