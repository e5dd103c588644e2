//! The bus as the outbox relay publishes through it: every event counted, and a
//! "publish" span per event (a child of the event's create span) when spans are
//! exported. A wrapper, so that neither the relay nor a backend carries the telemetry.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{ConsumerLag, DeadLetter, EventBus, Handler, SharedBus};
use crate::envelope::Envelope;
use crate::telemetry::parent_of;
use crate::trace::{self, TraceContext};
use ticketing_contracts::events::Subject;

/// `bus`, instrumented (`ticketing_events_published_total{subject}`, publish spans).
pub struct Instrumented(SharedBus);

impl Instrumented {
    pub fn wrap(bus: SharedBus) -> SharedBus {
        Arc::new(Instrumented(bus))
    }
}

#[async_trait]
impl EventBus for Instrumented {
    async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        self.publish_batch(std::slice::from_ref(event)).await
    }

    async fn publish_batch(&self, events: &[Envelope]) -> anyhow::Result<()> {
        let spans: Vec<tracing::Span> = if trace::exporting() {
            events.iter().map(publish_span).collect()
        } else {
            Vec::new()
        };
        let published = self.0.publish_batch(events).await;
        if let Err(err) = &published {
            for span in &spans {
                span.record("otel.status_code", "error");
                span.record("error.message", tracing::field::display(err));
            }
        } else {
            for event in events {
                metrics::counter!("ticketing_events_published_total", "subject" => event.subject.as_str())
                    .increment(1);
            }
        }
        published
    }

    async fn subscribe(
        &self,
        group: &str,
        subject: Subject,
        handler: Arc<dyn Handler>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        self.0.subscribe(group, subject, handler, shutdown).await
    }

    async fn ping(&self) -> anyhow::Result<()> {
        self.0.ping().await
    }

    async fn consumer_lag(&self) -> anyhow::Result<Vec<ConsumerLag>> {
        self.0.consumer_lag().await
    }

    async fn dead_letters(&self, group: &str, subject: Subject) -> anyhow::Result<Vec<DeadLetter>> {
        self.0.dead_letters(group, subject).await
    }
}

fn publish_span(event: &Envelope) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = format!("publish {}", event.subject),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
        messaging.system = "ticketing",
        messaging.operation.type = "publish",
        messaging.destination.name = event.subject.as_str(),
        messaging.message.id = event.id.as_str(),
        trace_id = tracing::field::Empty,
    );
    TraceContext::start(&span, parent_of(event));
    span
}
