//! W3C trace context (`traceparent` / `tracestate`) carried from an HTTP request into
//! the events it causes, and from an event into the events its handler publishes, so
//! one trace id follows a purchase across every service.
//!
//! The context of the operation in progress lives in a task-local: the HTTP middleware
//! (the service kit) and the bus set it, `Envelope::new` reads it.
//!
//! When spans are exported (OpenTelemetry, `kit::telemetry`), an operation's ids are
//! those of its exported `tracing` span ([`TraceContext::start`]), so every `traceparent`
//! a header or an event carries names a span the collector receives. Otherwise the ids
//! are drawn here and nothing else happens: a span costs what a log span costs.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once the OpenTelemetry layer is installed (`kit::telemetry::init`).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Spans are exported from now on: operations take their ids from their spans.
pub fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Are spans exported (an OTLP endpoint is configured)?
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The span of the current operation: 16 lowercase hex digits.
    pub span_id: String,
    pub sampled: bool,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A new trace.
    pub fn root() -> TraceContext {
        TraceContext {
            trace_id: hex(&rand::random::<[u8; 16]>()),
            span_id: new_span_id(),
            sampled: true,
            tracestate: None,
        }
    }

    /// A `traceparent` header of version 00; `None` when malformed or all-zero.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let is_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if version != "00"
            || parts.next().is_some()
            || !is_hex(trace_id, 32)
            || !is_hex(span_id, 16)
            || !is_hex(flags, 2)
            || trace_id.bytes().all(|b| b == b'0')
            || span_id.bytes().all(|b| b == b'0')
        {
            return None;
        }
        Some(TraceContext {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            sampled: u8::from_str_radix(flags, 16).ok()? & 1 == 1,
            tracestate: tracestate.map(str::to_owned),
        })
    }

    /// The same trace, a new span whose parent is this one.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: new_span_id(),
            ..self.clone()
        }
    }

    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }

    /// The context of the operation in progress, if any.
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Run `fut` as an operation of this context.
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        let span = tracing::info_span!("op", trace_id = %self.trace_id);
        CURRENT.scope(self, fut.instrument(span)).await
    }

    /// The context of the operation `span` stands for: a child of `parent` (a remote
    /// context: a request's header, an event's envelope), or of the operation in progress,
    /// or a new trace. When spans are exported, `span` is that span (its parent set, its
    /// ids the context's); `span` should have an empty `trace_id` field, filled here so
    /// that log lines name the trace.
    pub fn start(span: &tracing::Span, parent: Option<TraceContext>) -> TraceContext {
        let parent = parent.or_else(TraceContext::current);
        let context = match exporting()
            .then(|| exported(span, parent.as_ref()))
            .flatten()
        {
            Some(context) => context,
            None => parent.map(|p| p.child()).unwrap_or_else(TraceContext::root),
        };
        span.record("trace_id", context.trace_id.as_str());
        context
    }

    /// Run `fut` as the operation `span` (made with [`start`](Self::start)) of this
    /// context.
    pub async fn scope_in<F: std::future::Future>(self, span: tracing::Span, fut: F) -> F::Output {
        CURRENT.scope(self, fut.instrument(span)).await
    }

    /// Mark the exported `span` as following from this context's span (another trace:
    /// the form post a page was redirected from). Nothing when spans are not exported.
    pub fn link_from(&self, span: &tracing::Span) {
        if let Some(context) = self.span_context() {
            span.add_link(context);
        }
    }

    /// This context as OpenTelemetry's remote parent.
    fn otel_parent(&self) -> Option<opentelemetry::Context> {
        let span = self.span_context()?;
        Some(opentelemetry::Context::new().with_remote_span_context(span))
    }

    fn span_context(&self) -> Option<SpanContext> {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = self
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        Some(SpanContext::new(
            TraceId::from_hex(&self.trace_id).ok()?,
            SpanId::from_hex(&self.span_id).ok()?,
            flags,
            true,
            state,
        ))
    }
}

/// `span`'s exported context, its parent set to `parent`; `None` when the span is not
/// exported (filtered out, or no OpenTelemetry layer).
fn exported(span: &tracing::Span, parent: Option<&TraceContext>) -> Option<TraceContext> {
    // The parent must be set before `context()`, which starts the span.
    if let Some(parent) = parent.and_then(TraceContext::otel_parent) {
        span.set_parent(parent).ok()?;
    }
    let otel = span.context();
    let ids = otel.span().span_context().clone();
    if !ids.is_valid() {
        return None;
    }
    Some(TraceContext {
        trace_id: ids.trace_id().to_string(),
        span_id: ids.span_id().to_string(),
        sampled: ids.is_sampled(),
        tracestate: parent.and_then(|p| p.tracestate.clone()),
    })
}

fn new_span_id() -> String {
    hex(&rand::random::<[u8; 8]>())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_continues_a_trace() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(tp, Some("k=v")).unwrap();
        assert_eq!(ctx.traceparent(), tp);
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
        assert_eq!(child.tracestate.as_deref(), Some("k=v"));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(TraceContext::parse(bad, None).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn events_made_in_an_operation_carry_its_trace() {
        use crate::Envelope;
        use ticketing_contracts::events::ExpirationComplete;
        let ctx = TraceContext::root();
        let event = ctx
            .clone()
            .scope(async {
                Envelope::new(&ExpirationComplete {
                    order_id: "o".into(),
                })
            })
            .await;
        let carried = TraceContext::parse(event.traceparent.as_deref().unwrap(), None).unwrap();
        assert_eq!(carried.trace_id, ctx.trace_id);
        assert_ne!(carried.span_id, ctx.span_id);
        assert!(Envelope::new(&ExpirationComplete {
            order_id: "o".into()
        })
        .traceparent
        .is_none());
    }
}
