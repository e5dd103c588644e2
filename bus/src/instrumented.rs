//! The bus as the outbox relay publishes through it: every event counted, and a
//! "publish" span per event (a child of the event's create span) when spans are
//! exported. A wrapper, so that neither the relay nor a backend carries the telemetry.

use crate::bus::SharedBus;
use crate::envelope::Envelope;
use crate::telemetry::parent_of;
use crate::trace::{self, TraceContext};

/// `bus`, instrumented (`ticketing_events_published_total{subject}`, publish spans). Not
/// an `EventBus` itself: the relay only publishes batches.
pub struct Instrumented(SharedBus);

impl Instrumented {
    pub fn wrap(bus: SharedBus) -> Instrumented {
        Instrumented(bus)
    }

    /// [`EventBus::publish_batch`](crate::EventBus::publish_batch), counted and
    /// traced.
    pub async fn publish_batch(&self, events: &[Envelope]) -> anyhow::Result<()> {
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
