//! W3C trace context (`traceparent` / `tracestate`) carried from an HTTP request into
//! the events it causes, and from an event into the events its handler publishes, so
//! one trace id follows a purchase across every service.
//!
//! The context of the operation in progress lives in a task-local: the HTTP middleware
//! (the service kit) and the bus set it, `Envelope::new` reads it.

use tracing::Instrument;

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
