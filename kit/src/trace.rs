//! The HTTP side of trace propagation: a request continues its caller's W3C trace
//! context (or starts one) in a server span, and the response names that span; a call
//! made on a request's behalf gets a client span whose context its headers carry.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use ticketing_bus::trace::{self, TraceContext};

/// Continue the caller's trace (or start one) for the request, and answer with the
/// `traceparent` of the server span.
pub async fn trace_http(req: Request, next: Next) -> Response {
    let parent = remote_parent(&req);
    let span = server_span(&req);
    let context = TraceContext::start(&span, parent);
    let traceparent = context.traceparent();
    let mut response = context.scope_in(span.clone(), next.run(req)).await;
    let status = response.status();
    span.record("http.response.status_code", u64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

fn remote_parent(req: &Request) -> Option<TraceContext> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    header("traceparent").and_then(|tp| TraceContext::parse(tp, header("tracestate")))
}

/// The exported server span, or while nothing is exported the plain span log lines
/// show. Probes and scrapes (every few seconds, saying nothing about a journey) get no
/// span at all: exported, even the plain one would make a trace each.
fn server_span(req: &Request) -> tracing::Span {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return tracing::Span::none();
    }
    if !trace::exporting() {
        return tracing::info_span!("op", trace_id = tracing::field::Empty);
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let method = req.method().as_str();
    tracing::info_span!(
        "request",
        otel.name = match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = path,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    )
}

/// A client span for a call to `method route` made by the operation in progress (a
/// page asking the API), and the context the call's `traceparent` should carry: the
/// span's when spans are exported, else a child of the operation's.
pub fn client_call(method: &str, route: &str) -> (tracing::Span, TraceContext) {
    let span = if trace::exporting() {
        tracing::info_span!(
            "call",
            otel.name = format!("{method} {route}"),
            otel.kind = "client",
            http.request.method = method,
            url.template = route,
            trace_id = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let context = TraceContext::start(&span, None);
    (span, context)
}
