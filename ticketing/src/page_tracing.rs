//! How the pages' API calls join the page request's trace (docs/decisions/0015): the
//! web crate knows only [`Propagation`]; the contexts and spans are the bus's and the
//! service kit's, as for every other request.

use ticketing_bus::trace::{self, TraceContext};
use ticketing_web::trace::{CallContext, Propagation};

pub struct Platform;

impl Propagation for Platform {
    fn call(&self, method: &axum::http::Method, route: &str) -> CallContext {
        let (span, context) = ticketing_kit::trace::client_call(method.as_str(), route);
        CallContext {
            span,
            traceparent: context.traceparent(),
            tracestate: context.tracestate,
        }
    }

    fn current(&self) -> Option<String> {
        trace::exporting()
            .then(TraceContext::current)
            .flatten()
            .map(|context| context.traceparent())
    }

    fn link(&self, traceparent: &str) {
        if let Some(context) = TraceContext::parse(traceparent, None) {
            context.link_from(&tracing::Span::current());
        }
    }
}
