//! The distributed mode's bus: NATS JetStream.
//!
//! Naming, all derived from a prefix (`ticketing` in production, unique per test):
//! - one stream `{prefix}-events` holding every subject `{prefix}.>`;
//! - events on `{prefix}.{subject}`, with the seed's subject names as they are
//!   (`ticketing.ticket:created`: `:` is legal in NATS subjects, `.` separates tokens);
//! - dead letters on `{prefix}.dlq.{group}.{subject}` (same stream, so they are durable);
//! - one durable pull consumer per (group, subject), named `{group}--{subject}` with `:`
//!   replaced by `-` (`orders-service--ticket-created`), shared by the group's replicas.
//!
//! Headers: `Nats-Msg-Id` = event id (the stream's duplicate window drops republished
//! events), `traceparent`, `tracestate`, `Ticketing-Produced-At` (epoch milliseconds).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::header::{HeaderMap, HeaderName, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{ConsumerLag, DeadLetter, EventBus, Handler, RetryPolicy, RETENTION};
use crate::envelope::Envelope;
use ticketing_contracts::events::Subject;

mod subscription;
use subscription::Subscription;

pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_TRACESTATE: &str = "tracestate";
pub const HEADER_PRODUCED_AT: &str = "Ticketing-Produced-At";
pub const HEADER_GROUP: &str = "Ticketing-Group";
pub const HEADER_ATTEMPTS: &str = "Ticketing-Attempts";
pub const HEADER_ERROR: &str = "Ticketing-Error";

/// How long JetStream drops a republished event id.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// A message not acknowledged for this long goes to another subscriber of the group:
/// how soon a killed process's in-flight events are handled elsewhere. A live handler
/// that takes longer keeps its messages by reporting progress ([`PROGRESS_EVERY`]).
const ACK_WAIT: Duration = Duration::from_secs(5);
/// How often a running handler tells JetStream its messages are still in progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    stream: String,
    policy: RetryPolicy,
    /// The durable consumers this process subscribed, for [`EventBus::consumer_lag`].
    subscribed: Arc<std::sync::Mutex<std::collections::BTreeMap<String, (String, Subject)>>>,
}

impl NatsBus {
    /// Connect and create the stream if missing.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<NatsBus> {
        Self::connect_with(url, prefix, RetryPolicy::default()).await
    }

    pub async fn connect_with(
        url: &str,
        prefix: &str,
        policy: RetryPolicy,
    ) -> anyhow::Result<NatsBus> {
        anyhow::ensure!(
            !prefix.is_empty() && prefix.chars().all(token_char),
            "NATS prefix {prefix:?} must be letters, digits, '-' and '_'"
        );
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let js = jetstream::new(client.clone());
        let stream = format!("{prefix}-events");
        let config = stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            max_age: RETENTION,
            ..Default::default()
        };
        // A few tries: the server removes its account's stream directory when the last
        // stream is deleted, and a stream created at that instant fails with a 500
        // ("could not create storage directory"; seen with parallel tests, each with
        // a stream of its own).
        let mut attempt = 1;
        loop {
            match js.get_or_create_stream(config.clone()).await {
                Ok(_) => break,
                Err(err) if attempt < 3 => {
                    tracing::warn!(error = %err, stream = %stream, attempt, "creating the JetStream stream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    attempt += 1;
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("creating JetStream stream {stream}"))
                }
            }
        }
        Ok(NatsBus {
            client,
            js,
            prefix: prefix.to_owned(),
            stream,
            policy,
            subscribed: Default::default(),
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The NATS subject of an event subject.
    pub fn subject_name(&self, subject: Subject) -> String {
        format!("{}.{}", self.prefix, subject.as_str())
    }

    /// The subject `group`'s dead letters of `subject` go to.
    pub fn dead_letter_subject(&self, group: &str, subject: Subject) -> String {
        format!("{}.dlq.{}.{}", self.prefix, group, subject.as_str())
    }

    /// The event subject of a NATS subject of this bus.
    pub fn parse_subject(&self, name: &str) -> Option<Subject> {
        Subject::parse(name.strip_prefix(&self.prefix)?.strip_prefix('.')?)
    }

    async fn publish_all(&self, events: &[Envelope]) -> anyhow::Result<()> {
        // Send everything, then wait for the acks: one round trip per batch.
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let ack = self
                .js
                .publish_with_headers(
                    self.subject_name(event.subject),
                    headers_of(event),
                    event.payload.clone(),
                )
                .await
                .context("publishing to JetStream")?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.context("waiting for the JetStream ack")?;
        }
        Ok(())
    }
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A header of a received message. Looked up by parsed name: received headers with a
/// standard name (`Nats-Msg-Id`) do not match a name given as a plain `&str`.
pub fn header_value(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    let name = HeaderName::from_str(name).ok()?;
    headers?.get(name).map(|v| v.as_str().to_owned())
}

pub fn headers_of(event: &Envelope) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, event.id.as_str());
    if let Some(tp) = &event.traceparent {
        headers.insert(HEADER_TRACEPARENT, tp.as_str());
    }
    if let Some(ts) = &event.tracestate {
        headers.insert(HEADER_TRACESTATE, ts.as_str());
    }
    headers.insert(HEADER_PRODUCED_AT, event.produced_at.to_string().as_str());
    headers
}

/// The envelope of a message; an error for a message no handler can take.
pub fn envelope_of(
    subject: Subject,
    headers: Option<&HeaderMap>,
    payload: &bytes::Bytes,
) -> anyhow::Result<Envelope> {
    let header = |name: &str| header_value(headers, name);
    Ok(Envelope {
        id: header(NATS_MESSAGE_ID.as_ref()).context("message without Nats-Msg-Id")?,
        subject,
        payload: payload.clone(),
        traceparent: header(HEADER_TRACEPARENT),
        tracestate: header(HEADER_TRACESTATE),
        produced_at: header(HEADER_PRODUCED_AT)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default(),
    })
}

#[async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        self.publish_all(std::slice::from_ref(event)).await
    }

    async fn publish_batch(&self, events: &[Envelope]) -> anyhow::Result<()> {
        self.publish_all(events).await
    }

    async fn subscribe(
        &self,
        group: &str,
        subject: Subject,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        anyhow::ensure!(
            !group.is_empty() && group.chars().all(token_char),
            "consumer group {group:?} must be letters, digits, '-' and '_'"
        );
        let durable = format!("{group}--{}", subject.as_str().replace(':', "-"));
        let stream = self.js.get_stream(&self.stream).await?;
        // Create, or update a consumer made by an older version (its `ack_wait`): the
        // server edits the mutable fields of an existing durable in place.
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: self.subject_name(subject),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                // We count attempts ourselves and dead-letter; the server must
                // not silently stop redelivering.
                max_deliver: -1,
                max_ack_pending: 1000,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating JetStream consumer {durable}"))?;
        self.subscribed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(durable, (group.to_owned(), subject));
        let subscription = Subscription {
            bus: self.clone(),
            group: group.to_owned(),
            subject,
            handler,
        };
        Ok(tokio::spawn(subscription.run(consumer, shutdown)))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(2), self.js.get_stream(&self.stream))
            .await
            .context("NATS did not answer")?
            .context("JetStream stream unavailable")?;
        Ok(())
    }

    async fn consumer_lag(&self) -> anyhow::Result<Vec<ConsumerLag>> {
        let subscribed = self
            .subscribed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut lags = Vec::with_capacity(subscribed.len());
        if subscribed.is_empty() {
            return Ok(lags);
        }
        let stream = self.js.get_stream(&self.stream).await?;
        for (durable, (group, subject)) in subscribed {
            let info = stream
                .consumer_info(&durable)
                .await
                .map_err(|e| anyhow::anyhow!("JetStream consumer {durable}: {e}"))?;
            lags.push(ConsumerLag {
                group,
                subject,
                // Not yet delivered, and delivered but not yet acknowledged.
                pending: info.num_pending + info.num_ack_pending as u64,
            });
        }
        Ok(lags)
    }

    async fn dead_letters(&self, group: &str, subject: Subject) -> anyhow::Result<Vec<DeadLetter>> {
        let stream = self.js.get_stream(&self.stream).await?;
        let mut reader: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: self.dead_letter_subject(group, subject),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await?;
        let pending = reader.info().await?.num_pending as usize;
        let mut letters = Vec::with_capacity(pending);
        if pending > 0 {
            let mut batch = reader
                .fetch()
                .max_messages(pending)
                .expires(Duration::from_secs(2))
                .messages()
                .await?;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!(e))?;
                let headers = message.headers.as_ref();
                let header = |name: &str| header_value(headers, name);
                let mut event = envelope_of(subject, headers, &message.payload)?;
                // The dead letter's own id carries a suffix; give back the event's.
                if let Some(id) = header("Ticketing-Event-Id") {
                    event.id = id;
                }
                letters.push(DeadLetter {
                    group: group.to_owned(),
                    event,
                    attempts: header(HEADER_ATTEMPTS)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    error: header(HEADER_ERROR).unwrap_or_default(),
                });
            }
        }
        let name = reader.cached_info().name.clone();
        let _ = stream.delete_consumer(&name).await;
        Ok(letters)
    }
}
