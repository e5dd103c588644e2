//! The event bus: publish durably, consume per consumer group with explicit ack.
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
use crate::telemetry;
use crate::trace::TraceContext;
use ticketing_contracts::events::Subject;
use ticketing_store::Tx;

/// How long a bus keeps an event (and a dead letter), handled or not: JetStream's
/// stream `max_age`, and the in-process log's pruning age.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a handler did not finish an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Not yet: the event depends on one still on its way (an update that arrived
    /// before its predecessor). Redelivered with capped backoff for as long as it takes
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

    /// The handler's side that handles several events in one database transaction, if
    /// it has one (see [`Batch`]).
    fn batch(&self) -> Option<&dyn Batch> {
        None
    }
}

/// A handler whose events can share a transaction: when several are waiting, the bus
/// handles them in order in one transaction and commits once — one commit (and, on
/// PostgreSQL, one log flush) for the lot instead of one per event. When one of them
/// fails, the whole transaction is rolled back and the events are handled again one
/// per transaction, so the failure is the failing event's alone.
#[async_trait]
pub trait Batch: Send + Sync {
    /// For each event of the batch, was it handled before? Its outside effects are then
    /// skipped. Asked once per batch, before any [`prepare`](Batch::prepare).
    async fn handled(&self, events: &[&Envelope]) -> Result<Vec<bool>, ticketing_store::Error> {
        Ok(vec![false; events.len()])
    }

    /// Effects outside the database for `event` (idempotent), run for every event of
    /// the batch not handled before, before the batch's transaction begins.
    async fn prepare(&self, event: &Envelope) -> Result<(), HandlerError> {
        let _ = event;
        Ok(())
    }

    async fn begin(&self) -> Result<Tx, ticketing_store::Error>;

    /// Mark every event of the batch handled in `tx`; for each, whether it is new (an
    /// event handled before is skipped).
    async fn mark(
        &self,
        tx: &mut Tx,
        events: &[&Envelope],
    ) -> Result<Vec<bool>, ticketing_store::Error>;

    /// Handle `event`, already marked, in `tx`; on an error the bus rolls back what it
    /// did.
    async fn handle_in(&self, tx: &mut Tx, event: &Envelope) -> Result<(), HandlerError>;

    /// Does [`handle_all`](Batch::handle_all) take the batch whole (rather than
    /// [`handle_in`](Batch::handle_in) for each event, in the event's own trace)?
    fn handles_all(&self) -> bool;

    /// Handle every event of `events` (each with the trace it continues), already
    /// marked, in `tx`, in order.
    async fn handle_all(
        &self,
        tx: &mut Tx,
        events: Vec<(&Envelope, TraceContext)>,
    ) -> Result<(), HandlerError>;

    /// After the batch's commit.
    fn committed(&self);
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

/// Run `group`'s handler of an event, turning a panic into an ordinary failure so one
/// bad event cannot kill a subscription; counted, in a span continuing the event's trace.
pub(crate) async fn run_handler(
    group: &str,
    handler: &dyn Handler,
    event: &Envelope,
) -> Result<(), HandlerError> {
    use futures::FutureExt;
    let received_at = ticketing_contracts::time::now_millis();
    // The handler continues the trace of the operation that published the event.
    let span = telemetry::process_span(group, event);
    let trace = TraceContext::start(&span, telemetry::parent_of(event));
    let handled = std::panic::AssertUnwindSafe(handler.handle(event)).catch_unwind();
    let outcome = match trace.scope_in(span.clone(), handled).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HandlerError::Other(anyhow::anyhow!("handler panicked"))),
    };
    telemetry::handled(group, event, received_at, &span, &outcome);
    outcome
}

/// Run `group`'s handler of several events, oldest first: in one transaction when the
/// handler has a [`Batch`] side, else one at a time. One outcome per event, in order.
pub(crate) async fn run_handlers(
    group: &str,
    handler: &dyn Handler,
    events: &[&Envelope],
) -> Vec<Result<(), HandlerError>> {
    if let Some(batch) = handler.batch().filter(|_| events.len() > 1) {
        match run_batch(group, batch, events).await {
            Ok(Batched::Committed) => return events.iter().map(|_| Ok(())).collect(),
            // One event failed: the batch is undone, and the events are handled again
            // one at a time below, each with its own outcome.
            Ok(Batched::Failed) => {}
            // The transaction failed as a whole (the database): nothing of it is
            // committed, and trying each event alone now would fail the same way.
            Err(err) => {
                return events
                    .iter()
                    .map(|_| Err(HandlerError::Other(anyhow::anyhow!("batch failed: {err}"))))
                    .collect()
            }
        }
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        outcomes.push(run_handler(group, handler, event).await);
    }
    outcomes
}

enum Batched {
    Committed,
    Failed,
}

/// Handle every event in one transaction, optimistically: no savepoint per event (each
/// costs two statements and a copy of every page the event touches), so the first
/// failure rolls the whole batch back and [`run_handlers`] takes the events one by one.
/// Failures are the exception (a replica update that overtook its predecessor, a
/// database error), so the common case pays one transaction for the lot.
async fn run_batch(
    group: &str,
    batch: &dyn Batch,
    events: &[&Envelope],
) -> Result<Batched, ticketing_store::Error> {
    use futures::FutureExt;
    use std::panic::AssertUnwindSafe;
    // Effects outside the database first, for every event, before the transaction
    // holds anything (they are idempotent: a fallback or a redelivery runs them again).
    let handled = batch.handled(events).await?;
    let mut traced = Vec::with_capacity(events.len());
    for (event, handled) in events.iter().zip(handled) {
        let received_at = ticketing_contracts::time::now_millis();
        let span = telemetry::process_span(group, event);
        let trace = TraceContext::start(&span, telemetry::parent_of(event));
        if handled {
            traced.push((received_at, span, trace));
            continue;
        }
        let prepared = AssertUnwindSafe(batch.prepare(event)).catch_unwind();
        let scoped = trace.clone().scope_in(span.clone(), prepared).await;
        if !matches!(scoped, Ok(Ok(()))) {
            return Ok(Batched::Failed);
        }
        traced.push((received_at, span, trace));
    }
    let mut tx = batch.begin().await?;
    let fresh = batch.mark(&mut tx, events).await?;
    if batch.handles_all() {
        let fresh: Vec<(&Envelope, TraceContext)> = events
            .iter()
            .zip(&traced)
            .zip(fresh)
            .filter(|(_, fresh)| *fresh)
            .map(|((event, (_, _, trace)), _)| (*event, trace.clone()))
            .collect();
        let handled = AssertUnwindSafe(batch.handle_all(&mut tx, fresh))
            .catch_unwind()
            .await;
        if !matches!(handled, Ok(Ok(()))) {
            tx.rollback().await?;
            return Ok(Batched::Failed);
        }
    } else {
        for ((event, (_, span, trace)), fresh) in events.iter().zip(&traced).zip(fresh) {
            if !fresh {
                continue;
            }
            let handled = AssertUnwindSafe(batch.handle_in(&mut tx, event)).catch_unwind();
            let scoped = trace.clone().scope_in(span.clone(), handled).await;
            if !matches!(scoped, Ok(Ok(()))) {
                tx.rollback().await?;
                return Ok(Batched::Failed);
            }
        }
    }
    tx.commit().await?;
    batch.committed();
    for (event, (received_at, span, _)) in events.iter().zip(&traced) {
        telemetry::handled(group, event, *received_at, span, &Ok(()));
    }
    Ok(Batched::Committed)
}

impl HandlerError {
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
