//! What the bus reports of consumers: the "process" spans and the event counters (the
//! publishing side is `instrumented.rs`).
//!
//! Series (Prometheus names; `subject` is the event subject, `group` the consumer group):
//! - `ticketing_events_published_total{subject}`: events the outbox relay published
//!   (`instrumented.rs`);
//! - `ticketing_events_handled_total{subject,group}`: deliveries a handler finished
//!   (acknowledged, duplicates included);
//! - `ticketing_events_failed_total{subject,group}`: deliveries a handler failed (each
//!   one is retried later or dead-lettered);
//! - `ticketing_events_dead_lettered_total{subject,group}`;
//! - `ticketing_event_age_seconds{subject,group}`: from the event's production (its
//!   commit in the outbox) to the start of its handling: the bus's end-to-end delay.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use metrics::{Counter, Histogram};
use ticketing_contracts::events::Subject;

use crate::bus::HandlerError;
use crate::envelope::Envelope;
use crate::trace::{self, TraceContext};

/// The trace context an event was produced in.
pub(crate) fn parent_of(event: &Envelope) -> Option<TraceContext> {
    event
        .traceparent
        .as_deref()
        .and_then(|tp| TraceContext::parse(tp, event.tracestate.as_deref()))
}

/// The "process" span of `group` handling `event`; without export, the plain span log
/// lines show (the exported one's attributes cost a few allocations per event).
pub(crate) fn process_span(group: &str, event: &Envelope) -> tracing::Span {
    if !trace::exporting() {
        return tracing::info_span!("op", trace_id = tracing::field::Empty);
    }
    tracing::info_span!(
        "process",
        otel.name = format!("process {}", event.subject),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
        messaging.system = "ticketing",
        messaging.operation.type = "process",
        messaging.destination.name = event.subject.as_str(),
        messaging.consumer.group.name = group,
        messaging.message.id = event.id.as_str(),
        trace_id = tracing::field::Empty,
    )
}

/// Count a delivery to `group` received at `received_at` (epoch milliseconds), and mark
/// its span on failure.
pub(crate) fn handled(
    group: &str,
    event: &Envelope,
    received_at: i64,
    span: &tracing::Span,
    outcome: &Result<(), HandlerError>,
) {
    let series = series(group, event.subject);
    match outcome {
        Ok(()) => series.handled.increment(1),
        Err(err) => {
            series.failed.increment(1);
            span.record("otel.status_code", "error");
            span.record("error.message", tracing::field::display(err));
        }
    }
    if event.produced_at > 0 {
        // Wall clocks of two processes: good to the clock skew between them.
        series
            .age
            .record((received_at - event.produced_at).max(0) as f64 / 1000.0);
    }
}

/// A subscription's series, looked up in the recorder once: building the labelled key
/// for every event cost several times the update itself (~0.6 µs against ~0.1 µs).
struct Series {
    handled: Counter,
    failed: Counter,
    dead_lettered: Counter,
    age: Histogram,
}

type SeriesBySubject = HashMap<Subject, HashMap<String, Arc<Series>>>;

fn series(group: &str, subject: Subject) -> Arc<Series> {
    static SERIES: OnceLock<RwLock<SeriesBySubject>> = OnceLock::new();
    let cache = SERIES.get_or_init(Default::default);
    let known = cache
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&subject)
        .and_then(|groups| groups.get(group))
        .cloned();
    if let Some(series) = known {
        return series;
    }
    let labels = [
        ("subject", subject.as_str().to_owned()),
        ("group", group.to_owned()),
    ];
    let series = Arc::new(Series {
        handled: metrics::counter!("ticketing_events_handled_total", &labels),
        failed: metrics::counter!("ticketing_events_failed_total", &labels),
        dead_lettered: metrics::counter!("ticketing_events_dead_lettered_total", &labels),
        age: metrics::histogram!("ticketing_event_age_seconds", &labels),
    });
    cache
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(subject)
        .or_default()
        .entry(group.to_owned())
        .or_insert(series)
        .clone()
}

/// Show `group`'s counters of `subject` from the start, at 0: a failure rate needs the
/// series before the first failure. Call it once the metrics recorder is installed (the
/// series are looked up once per process).
pub fn register(group: &str, subject: Subject) {
    let series = series(group, subject);
    series.handled.increment(0);
    series.failed.increment(0);
    series.dead_lettered.increment(0);
}

/// Count an event `group` gave up on.
pub fn dead_lettered(group: &str, subject: Subject) {
    series(group, subject).dead_lettered.increment(1);
}
