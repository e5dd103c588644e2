//! A subscription's loop: claim, run the handler, settle or reschedule.

use super::consumer::{Claim, Claimed};
use super::*;
use crate::bus::{HandlerError, BATCH};
use crate::delivery::run_handlers;

/// One subscription: claims events of its consumer and runs the handler.
pub(super) struct Worker {
    pub(super) bus: InProcessBus,
    pub(super) consumer: Arc<Consumer>,
    pub(super) handler: Arc<dyn Handler>,
    pub(super) published: watch::Receiver<u64>,
}

impl Worker {
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
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
            match consumer.claim(BATCH) {
                Claim::Events(claimed) => {
                    self.deliver(&inner, claimed).await;
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

    /// Run the handler on claimed events (together when it can), then settle each
    /// handled one and reschedule or dead-letter each failed one.
    pub(super) async fn deliver(&self, inner: &Inner, claimed: Vec<Claimed>) {
        let events: Vec<&Envelope> = claimed.iter().map(|c| c.event.as_ref()).collect();
        let outcomes = run_handlers(&self.consumer.group, self.handler.as_ref(), &events).await;
        for (claim, outcome) in claimed.iter().zip(outcomes) {
            match outcome {
                Ok(()) => self.consumer.settle(claim.seq),
                Err(error) => {
                    self.failed(inner, claim.seq, &claim.event, claim.attempts, error)
                        .await
                }
            }
        }
    }

    async fn failed(
        &self,
        inner: &Inner,
        seq: i64,
        event: &Envelope,
        attempts: u32,
        error: HandlerError,
    ) {
        let consumer = &self.consumer;
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
                Ok(()) => {
                    crate::telemetry::dead_lettered(&consumer.group, consumer.subject, &event.id);
                    consumer.settle(seq)
                }
                // Not recorded: keep it rather than lose it.
                Err(err) => {
                    tracing::warn!(error = %err, "recording a dead letter failed");
                    consumer.reschedule(seq, policy.backoff(attempts));
                }
            }
        } else {
            let delay = error.redelivery_delay(attempts, &policy);
            // Counted failures survive a restart; a `Retry` is never given up on, so its
            // count does not matter.
            if matches!(error, HandlerError::Other(_)) {
                if let Err(err) = consumer.record_attempt(inner, seq, attempts).await {
                    tracing::warn!(error = %err, "recording a failed delivery failed");
                }
            }
            tracing::debug!(
                group = %consumer.group, subject = %consumer.subject, event_id = %event.id,
                attempts, retry_in = ?delay, error = %error, "event handler failed"
            );
            consumer.reschedule(seq, delay);
        }
    }

    pub(super) async fn persist(&self, inner: &Inner, force: bool) {
        if let Err(err) = self.consumer.persist(inner, force).await {
            tracing::warn!(error = %err, "saving a consumer cursor failed");
        }
    }
}
