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
//!   commit in the outbox) to the start of its handling: the bus's end-to-end delay;
//! - `ticketing_consumer_oldest_retry_seconds{subject,group}` (sampled by `kit`, from
//!   [`oldest_retries`]): how long the oldest event that failed here has been waiting
//!   for its redelivery to succeed — 0 when nothing waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

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
        Ok(()) => {
            series.handled.increment(1);
            series.stop_waiting(&event.id);
        }
        Err(HandlerError::Poison(_)) => {
            series.failed.increment(1);
            series.stop_waiting(&event.id);
        }
        Err(err) => {
            series.failed.increment(1);
            series.wait(group, event, err, received_at);
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
    /// Events that failed here and wait for a redelivery: id → when this process saw
    /// them fail first and last (epoch milliseconds).
    waiting: Mutex<HashMap<String, (i64, i64)>>,
}

/// An event still failing after this long is logged as a warning at each failure: a
/// predecessor that never comes, a dependency down for good.
const WAIT_WARNING: Duration = Duration::from_secs(60);
/// An event not seen failing for this long has been handled elsewhere (another process
/// of the group) or given up: redeliveries come at least every `RetryPolicy::backoff_max`
/// plus the ack wait.
const WAIT_FORGOTTEN: Duration = Duration::from_secs(120);

impl Series {
    fn wait(&self, group: &str, event: &Envelope, err: &HandlerError, now: i64) {
        let first = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            let entry = waiting.entry(event.id.clone()).or_insert((now, now));
            entry.1 = now;
            entry.0
        };
        let waited = Duration::from_millis((now - first).max(0) as u64);
        if waited >= WAIT_WARNING {
            tracing::warn!(
                group, subject = %event.subject, event_id = %event.id,
                waited_seconds = waited.as_secs(), error = %err,
                "event still failing; it is redelivered until it succeeds or is dead-lettered"
            );
        }
    }

    fn stop_waiting(&self, id: &str) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if !waiting.is_empty() {
            waiting.remove(id);
        }
    }

    /// Seconds the oldest waiting event has waited, forgetting the ones not seen lately.
    fn oldest_wait(&self, now: i64) -> f64 {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.retain(|_, (_, last)| now - *last < WAIT_FORGOTTEN.as_millis() as i64);
        let first = waiting.values().map(|(first, _)| *first).min();
        first.map_or(0.0, |first| (now - first).max(0) as f64 / 1000.0)
    }
}

/// Forget `events` of `group` as waiting: handled together, at once.
pub(crate) fn handled_together(group: &str, events: &[&Envelope]) {
    for event in events {
        series(group, event.subject).stop_waiting(&event.id);
    }
}

/// For each subscription of this process: (group, subject, seconds the oldest event
/// that failed here has been waiting for a redelivery to succeed).
pub fn oldest_retries() -> Vec<(String, Subject, f64)> {
    let now = ticketing_contracts::time::now_millis();
    let Some(cache) = SERIES.get() else {
        return Vec::new();
    };
    let cache = cache
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Vec::new();
    for (subject, groups) in cache.iter() {
        for (group, series) in groups {
            out.push((group.clone(), *subject, series.oldest_wait(now)));
        }
    }
    out
}

type SeriesBySubject = HashMap<Subject, HashMap<String, Arc<Series>>>;

static SERIES: OnceLock<RwLock<SeriesBySubject>> = OnceLock::new();

fn series(group: &str, subject: Subject) -> Arc<Series> {
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
        waiting: Mutex::default(),
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
pub(crate) fn dead_lettered(group: &str, subject: Subject, event_id: &str) {
    let series = series(group, subject);
    series.dead_lettered.increment(1);
    series.stop_waiting(event_id);
}
