//! One subscriber of a durable JetStream consumer: pulls what has arrived, hands it to
//! the delivery engine, reports progress while it runs, then acks, redelivers or
//! dead-letters each message.

use std::sync::Arc;
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::PROGRESS_EVERY;
use super::{envelope_of, headers_of, NatsBus, HEADER_ATTEMPTS, HEADER_ERROR, HEADER_GROUP};
use crate::bus::{Handler, HandlerError, BATCH};
use crate::delivery::run_handlers;
use crate::envelope::Envelope;
use ticketing_contracts::events::Subject;

/// Run `work` while telling JetStream every [`PROGRESS_EVERY`] that `messages` are still
/// being handled, so a slow handler (a provider call, a large batch) keeps them while a
/// dead process's messages come back after [`ACK_WAIT`](super::ACK_WAIT).
async fn in_progress<'a, T>(
    messages: impl Iterator<Item = &'a jetstream::Message> + Clone,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let start = tokio::time::Instant::now() + PROGRESS_EVERY;
    let mut ticks = tokio::time::interval_at(start, PROGRESS_EVERY);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => {
                for message in messages.clone() {
                    if let Err(err) = message.ack_with(AckKind::Progress).await {
                        tracing::debug!(error = %err, "reporting progress to JetStream failed");
                    }
                }
            }
        }
    }
}

/// One subscriber of a durable consumer.
pub(super) struct Subscription {
    pub(super) bus: NatsBus,
    pub(super) group: String,
    pub(super) subject: Subject,
    pub(super) handler: Arc<dyn Handler>,
}

impl Subscription {
    pub(super) async fn run(self, consumer: consumer::PullConsumer, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            // Whatever has arrived, up to a batch: handled in one transaction.
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages.ready_chunks(BATCH),
                Err(err) => {
                    tracing::warn!(error = %err, group = %self.group, subject = %self.subject, "pulling from JetStream failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = messages.next() => next,
                };
                let Some(chunk) = next else { break };
                let mut arrived = Vec::with_capacity(chunk.len());
                for message in chunk {
                    match message {
                        Ok(message) => arrived.push(message),
                        // Missed heartbeats while the server is away and the like: the
                        // stream keeps trying, so just report.
                        Err(err) => {
                            tracing::warn!(error = %err, group = %self.group, subject = %self.subject, "JetStream consumer error");
                        }
                    }
                }
                self.deliver(arrived).await;
            }
        }
    }

    async fn deliver(&self, messages: Vec<jetstream::Message>) {
        let mut decoded = Vec::with_capacity(messages.len());
        for message in messages {
            let attempts = message
                .info()
                .map(|info| info.delivered.max(1) as u32)
                .unwrap_or(1);
            match envelope_of(self.subject, message.headers.as_ref(), &message.payload) {
                Ok(event) => decoded.push((message, event, attempts)),
                Err(err) => {
                    let event = Envelope {
                        id: format!("undecodable-{}", uuid::Uuid::now_v7()),
                        subject: self.subject,
                        payload: message.payload.clone(),
                        traceparent: None,
                        tracestate: None,
                        produced_at: 0,
                    };
                    self.give_up(&message, &event, attempts, &err.to_string())
                        .await;
                }
            }
        }
        let events: Vec<&Envelope> = decoded.iter().map(|(_, event, _)| event).collect();
        let handling = run_handlers(&self.group, self.handler.as_ref(), &events);
        let outcomes = in_progress(decoded.iter().map(|(message, ..)| message), handling).await;
        for ((message, event, attempts), outcome) in decoded.iter().zip(outcomes) {
            self.settle(message, event, *attempts, outcome).await;
        }
    }

    /// Ack a handled message; redeliver or dead-letter a failed one.
    async fn settle(
        &self,
        message: &jetstream::Message,
        event: &Envelope,
        attempts: u32,
        outcome: Result<(), HandlerError>,
    ) {
        let error = match outcome {
            Ok(()) => {
                if let Err(err) = message.ack().await {
                    tracing::warn!(error = %err, "acking a JetStream message failed");
                }
                return;
            }
            Err(err) => err,
        };
        let policy = self.bus.policy;
        if error.gives_up(attempts, &policy) {
            self.give_up(message, event, attempts, &error.to_string())
                .await;
        } else {
            let delay = error.redelivery_delay(attempts, &policy);
            tracing::debug!(
                group = %self.group, subject = %self.subject, event_id = %event.id,
                attempts, retry_in = ?delay, error = %error, "event handler failed"
            );
            if let Err(err) = message.ack_with(AckKind::Nak(Some(delay))).await {
                tracing::warn!(error = %err, "naking a JetStream message failed");
            }
        }
    }

    /// Publish to the dead-letter subject, then terminate the message. If the dead
    /// letter cannot be stored, the message is redelivered later instead of lost.
    async fn give_up(
        &self,
        message: &jetstream::Message,
        event: &Envelope,
        attempts: u32,
        error: &str,
    ) {
        tracing::error!(
            group = %self.group, subject = %self.subject, event_id = %event.id,
            attempts, error, "event dead-lettered"
        );
        let mut headers = headers_of(event);
        // A distinct id so the duplicate window does not drop it as the original.
        headers.insert(
            NATS_MESSAGE_ID,
            format!("{}:dlq:{}", event.id, self.group).as_str(),
        );
        headers.insert("Ticketing-Event-Id", event.id.as_str());
        headers.insert(HEADER_GROUP, self.group.as_str());
        headers.insert(HEADER_ATTEMPTS, attempts.to_string().as_str());
        headers.insert(HEADER_ERROR, error);
        let stored = async {
            self.bus
                .js
                .publish_with_headers(
                    self.bus.dead_letter_subject(&self.group, self.subject),
                    headers,
                    event.payload.clone(),
                )
                .await?
                .await?;
            anyhow::Ok(())
        }
        .await;
        let kind = match stored {
            Ok(()) => {
                crate::telemetry::dead_lettered(&self.group, self.subject, &event.id);
                AckKind::Term
            }
            Err(err) => {
                tracing::warn!(error = %err, "publishing a dead letter failed");
                AckKind::Nak(Some(self.bus.policy.backoff_max))
            }
        };
        if let Err(err) = message.ack_with(kind).await {
            tracing::warn!(error = %err, "terminating a JetStream message failed");
        }
    }
}
