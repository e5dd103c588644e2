//! The event bus: publish durably, consume per consumer group with explicit ack.
//!
//! Delivery is at-least-once. Each (group, subject) pair is one durable consumer shared
//! by every replica of a service, so an event is handled once per group. A handler that
//! fails is retried with backoff; after the bus's attempt limit the message goes to a
//! dead-letter subject.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::contracts::Subject;
use super::envelope::Envelope;

/// Why a handler did not finish an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Try again later (e.g. an update that arrived before its predecessor, or a
    /// database that is briefly unavailable). Counts towards the attempt limit.
    #[error("retry later: {0}")]
    Retry(String),
    /// The message can never succeed (undecodable payload): dead-letter it at once.
    #[error("poison message: {0}")]
    Poison(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(err: sqlx::Error) -> Self {
        HandlerError::Other(err.into())
    }
}

/// Handles the events of one subscription. Returning `Ok` acknowledges the event.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, event: &Envelope) -> Result<(), HandlerError>;
}

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
}

pub type SharedBus = Arc<dyn EventBus>;
